"""Loading erasures from erase-diffusion into existing diffusers pipelines.

    from pipelines import load_erased_pipeline, paired_pipelines, compare
    pipe = load_erased_pipeline(BASE, "out/no-triangle")                      # any pipeline class of the base
    original, erased = paired_pipelines(BASE, "out/no-triangle")              # one UNet/VAE, two text encoders
    before, after = compare(original, erased, ["a red triangle"], seeds=[0])  # same noise, side by side
"""

from .erasure import read_erasure
from .loading import compare, load_erased_pipeline, paired_pipelines

__all__ = ["compare", "load_erased_pipeline", "paired_pipelines", "read_erasure"]

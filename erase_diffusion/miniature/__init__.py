"""The built-in miniature Stable Diffusion: a real, trained diffusers pipeline of 32x32 coloured shapes.

`model_path()` is a diffusers pipeline directory (StableDiffusionPipeline.from_pretrained works offline);
beside its components lie `clip/` (the full CLIPModel whose text tower is the text encoder) and `judge/`
(the independent open_clip judge).
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def model_path():
    """The miniature pipeline's directory."""
    return str(WEIGHTS_DIR)


def clip_path(base=None):
    """The full CLIPModel paired with the miniature's text encoder."""
    return str(Path(base or WEIGHTS_DIR) / "clip")


def judge_path(base=None):
    """The independent judge CLIP (open_clip format)."""
    return str(Path(base or WEIGHTS_DIR) / "judge")


def is_miniature(path):
    """True when `path` is a miniature pipeline directory (the shipped one or a retrained copy)."""
    p = Path(str(path))
    return (p / "model_index.json").is_file() and (p / "clip").is_dir() and (p / "judge").is_dir()

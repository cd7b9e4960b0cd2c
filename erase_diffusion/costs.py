"""Counting what an erasure or an evaluation costs in model evaluations, the unit that carries over to a real SD.

A UNet evaluation is one sample through the UNet once: an image drawn with 20 denoising steps and classifier-free
guidance costs 40 (the pipeline doubles the batch), one training step on a batch of 8 latents costs 8 (plus its
backward pass). Counted by a hook on the UNet's forward, so nothing is estimated.
"""

from contextlib import contextmanager


@contextmanager
def unet_evaluations(*unets):
    """Count samples through the given UNets' forward while the block runs: `with unet_evaluations(u) as n: ...;
    n["unet"]`."""
    counter = {"unet": 0}

    def count(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        counter["unet"] += int(sample.shape[0])

    handles = [u.register_forward_pre_hook(count, with_kwargs=True) for u in dict.fromkeys(unets)]
    try:
        yield counter
    finally:
        for h in handles:
            h.remove()

"""The first-order set's UNet gradients (UNetTerm.concept_gradients): the kept images' part projected out
(--linear_gradient_contrast) and each caption's draws from its own images (--linear_gradient_match)."""

import random

import torch


def test_the_contrasted_gradient_keeps_only_what_the_kept_images_do_not_share():
    """--linear_gradient_contrast: each caption's concept gradient loses its part along the same gradient on kept
    images (orthogonal to it afterwards), still points from the anchor towards the concept, and costs twice the draws."""
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path, world
    from erase_diffusion.unet_term import UNetTerm

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    with torch.no_grad():
        blob, tri = enc.text_encoder(enc.tokenize(["a red blob", "a red triangle"]))[0].split(1)
    images = [world.render("triangle", "red", random.Random(k)) for k in range(8)]
    kept = [world.render(s, "red", random.Random(k)) for k in range(4) for s in ("circle", "square")]
    term = UNetTerm(model_path(), images, blob, batch_size=1, seed=0, kept_images=kept)
    g = term.concept_gradients(blob, samples=16)
    assert term.evaluations == 2 * 16
    ref = UNetTerm(model_path(), images, blob, batch_size=1, seed=0, kept_images=kept)  # the same draws, one at a time
    concept, shared = (ref._gradients(blob, 16, latents, [None], 64) for latents in (ref.latents, ref.kept_latents))
    assert (concept * shared).sum() > 0.1 * concept.norm() * shared.norm()  # a part both share, worth removing
    assert abs((g * shared).sum()) < 1e-4 * g.norm() * shared.norm() and g.norm() < concept.norm()
    assert ((tri - blob) * g).sum() < 0  # what is left still lowers the concept's loss towards the concept


def test_a_pooled_gradient_reads_only_its_pool_s_images():
    """--linear_gradient_match: a caption whose pool holds one image gets the gradient of that image alone, draw for
    draw (a pool of one consumes the draws as a set of one does), and another pool a different one."""
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path, world
    from erase_diffusion.unet_term import UNetTerm

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    with torch.no_grad():
        blob = enc.text_encoder(enc.tokenize(["a red blob"]))[0]
    images = [world.render("triangle", c, random.Random(0)) for c in ("red", "blue")]
    term, alone, other = (UNetTerm(model_path(), images, blob, batch_size=1, seed=0) for _ in range(3))
    red = term._gradients(blob, 4, term.latents, [[0]], 64)
    assert torch.allclose(red, alone._gradients(blob, 4, alone.latents[:1], [None], 64))
    # the same noise and timesteps on the blue image
    assert not torch.allclose(red, other._gradients(blob, 4, other.latents, [[1]], 64), rtol=1e-2)

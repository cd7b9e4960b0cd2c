"""Loading a Stable Diffusion pipeline with clear errors, seeded generation, and image grids."""

import os

import torch
from PIL import Image, ImageDraw

from . import miniature
from .errors import UsageError


def check_pipeline_dir(path):
    """Raise UsageError unless `path` is a local diffusers pipeline directory (nothing is downloaded here)."""
    path = str(path)
    if not os.path.isdir(path):
        raise UsageError(f"model dir not found: {path!r} (expected a local diffusers pipeline directory)")
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise UsageError(f"{path!r} has no model_index.json: not a diffusers pipeline directory")
    return path


def load_pipeline(path=None, dtype=torch.float32, device="cpu"):
    """A StableDiffusion-family pipeline from a local directory (default: the miniature), safety checker off."""
    from diffusers import DiffusionPipeline

    path = check_pipeline_dir(path or miniature.model_path())
    pipe = DiffusionPipeline.from_pretrained(path, dtype=dtype, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def check_size(pipe, height, width):
    factor = pipe.vae_scale_factor
    for name, value in (("height", height), ("width", width)):
        if value is not None and (value <= 0 or value % factor):
            raise UsageError(f"--{name} {value} is not a positive multiple of the VAE factor {factor}")


def generate(pipe, prompts, seeds, num_inference_steps=20, guidance_scale=5.0, negative_prompt=None, height=None,
             width=None, batch_size=64):
    """One image per (prompt, seed) pair; image i depends only on prompts[i] and seeds[i], not on batching."""
    if num_inference_steps <= 0:
        raise UsageError(f"num_inference_steps {num_inference_steps} must be a positive integer")
    check_size(pipe, height, width)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    images = []
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i:i + batch_size])
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds[i:i + batch_size]]
        out = pipe(prompt=chunk, negative_prompt=[negative_prompt or ""] * len(chunk), generator=gens,
                   num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                   height=height or size, width=width or size, output_type="pil")
        images += out.images
    return images


def generate_scenes(pipe, prompts, seeds, **kwargs):
    """generate() for the miniature, at the size each prompt asks for: two named objects side by side at 64x32, one
    at 32x32 (world.image_size). Images come back in prompt order."""
    from .miniature import world

    images = [None] * len(prompts)
    for size in dict.fromkeys(world.image_size(p) for p in prompts):
        idx = [i for i, p in enumerate(prompts) if world.image_size(p) == size]
        drawn = generate(pipe, [prompts[i] for i in idx], [seeds[i] for i in idx], width=size[0], height=size[1],
                         **kwargs)
        for i, im in zip(idx, drawn):
            images[i] = im
    return images


def make_grid(images, cols, labels=None, scale=1, label_height=12, header=None):
    """Images in a grid of `cols` columns, each optionally captioned underneath, columns optionally titled; cells
    are as large as the largest image (a 64x32 scene beside 32x32 ones keeps its shape)."""
    w, h = max(im.width for im in images) * scale, max(im.height for im in images) * scale
    lh = label_height if labels else 0
    top = label_height if header else 0
    rows = (len(images) + cols - 1) // cols
    grid = Image.new("RGB", (cols * w, top + rows * (h + lh)), "white")
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(header or []):
        draw.text((c * w + 2, 0), title, fill="black")
    for i, im in enumerate(images):
        x, y = (i % cols) * w, top + (i // cols) * (h + lh)
        grid.paste(im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST), (x, y))
        if labels:
            draw.text((x + 2, y + h), labels[i], fill="black")
    return grid


def save_atomic(image, path):
    """Write a PNG via a temporary file, so a crash never leaves a half-written output."""
    tmp = f"{path}.tmp-{os.getpid()}"
    image.save(tmp, format="PNG")
    os.replace(tmp, path)

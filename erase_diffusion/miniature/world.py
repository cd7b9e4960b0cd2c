"""The miniature world: 32x32 images of one filled, coloured shape on a plain background, with captions.

The vocabulary is fixed because evaluation depends on it: the judge classifies into exactly these shapes and colours.
Variation is deliberately modest (the judge needs a recognisable shape, and a UNet trained for minutes on two CPU
cores learns shape only when position, size and rotation do not drown it).
"""

import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
RGB = {
    "red": (215, 30, 35),
    "green": (35, 165, 55),
    "blue": (35, 70, 215),
    "yellow": (235, 215, 30),
    "purple": (135, 45, 175),
    "orange": (245, 135, 20),
}
# Rephrasings that never use the shape's own word, so erasing "triangle" can be attacked by rewording it.
PARAPHRASES = {
    "circle": ("disc", "round shape"),
    "square": ("box", "four-sided shape"),
    "triangle": ("three-sided shape", "wedge"),
    "star": ("five-pointed shape", "pentagram"),
    "heart": ("love symbol", "valentine shape"),
    "cross": ("plus sign", "plus symbol"),
}
# A neutral thing that is none of the six shapes: the anchor an erased concept is mapped to, the way "a photo of
# an object" serves for real SD. It is drawn as a soft, irregular patch so the judge never mistakes it for a triangle.
NEUTRAL = "blob"
DRAWN = SHAPES + (NEUTRAL,)  # everything the world draws: what a retain set can keep (only SHAPES can be erased)
TEMPLATES = (
    "a {colour} {shape}",
    "a {shape} in {colour}",
    "a picture of a {colour} {shape}",
    "an image of a {colour} {shape}",
    "a drawing of a {colour} {shape}",
    "a {colour} {shape} on a plain background",
    "{colour} {shape}",
)
EXTRA_WORDS = ("a", "an", "the", "of", "in", "on", "photo", "shape", "object", "thing", "small", "big", "with")

IMAGE_SIZE = 32
_SUPERSAMPLE = 4  # draw at 4x and downsample: anti-aliased edges without a rasteriser of our own
ROTATION_DEG = 15.0  # modest variation: see module docstring
RADIUS_PX = (10.0, 14.5)
CENTRE_JITTER_PX = 3.0


def shape_words(shape):
    """Every way the world names `shape`: its word first, then its paraphrases."""
    return (shape,) + PARAPHRASES.get(shape, ())


def caption(shape, colour, rng, paraphrase_prob=0.3):
    """A random caption for (shape, colour): one of the templates, the shape sometimes paraphrased."""
    words = PARAPHRASES.get(shape, ())
    name = rng.choice(words) if words and rng.random() < paraphrase_prob else shape
    return rng.choice(TEMPLATES).format(colour=colour, shape=name)


def all_captions(shape, colour):
    """Every caption the world can give (shape, colour), paraphrases included."""
    return [t.format(colour=colour, shape=s) for t in TEMPLATES for s in shape_words(shape)]


def vocabulary():
    """Every word a caption can contain (the tokenizer gives each a single token)."""
    words = set(EXTRA_WORDS) | set(SHAPES) | set(COLOURS) | {NEUTRAL}
    for phrases in PARAPHRASES.values():
        for phrase in phrases:
            words.update(phrase.replace("-", " ").split())
    for template in TEMPLATES:
        words.update(w for w in template.replace(",", " ").split() if "{" not in w)
    return sorted(words)


def _outline(shape, rng):
    """Polygon vertices of `shape` on the unit disc, pointing up."""
    if shape in ("circle", NEUTRAL):
        wobble = [rng.uniform(-0.25, 0.25) for _ in range(3)] if shape == NEUTRAL else [0, 0, 0]
        pts = []
        for i in range(64):
            a = 2 * math.pi * i / 64
            r = 1 + wobble[0] * math.sin(2 * a + 1) + wobble[1] * math.sin(3 * a + 2) + wobble[2] * math.cos(a)
            pts.append((r * math.cos(a), r * math.sin(a)))
        return pts
    if shape == "square":
        s = 0.82
        return [(-s, -s), (s, -s), (s, s), (-s, s)]
    if shape == "triangle":
        return [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "star":
        return [
            ((1.0 if i % 2 == 0 else 0.42) * math.cos(-math.pi / 2 + i * math.pi / 5),
             (1.0 if i % 2 == 0 else 0.42) * math.sin(-math.pi / 2 + i * math.pi / 5))
            for i in range(10)
        ]
    if shape == "heart":
        pts = []
        for i in range(64):
            t = 2 * math.pi * i / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17.0, -(y + 2.5) / 17.0))
        return pts
    if shape == "cross":
        w = 0.32
        return [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
                (-w, -w)]
    raise ValueError(f"unknown shape {shape!r}; expected one of {DRAWN}")


def render(shape, colour, rng=None):
    """Render one RGB PIL image of `shape` in `colour` with random size, position, rotation and background."""
    rng = rng or random.Random()
    size = IMAGE_SIZE * _SUPERSAMPLE
    shade = rng.randint(150, 250)
    img = Image.new("RGB", (size, size), (shade, shade, shade))
    radius = rng.uniform(*RADIUS_PX) * _SUPERSAMPLE
    cx = (IMAGE_SIZE / 2 + rng.uniform(-CENTRE_JITTER_PX, CENTRE_JITTER_PX)) * _SUPERSAMPLE
    cy = (IMAGE_SIZE / 2 + rng.uniform(-CENTRE_JITTER_PX, CENTRE_JITTER_PX)) * _SUPERSAMPLE
    if shape == NEUTRAL:
        radius *= 0.7
    theta = math.radians(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    cos, sin = math.cos(theta), math.sin(theta)
    pts = [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in _outline(shape, rng)]
    fill = tuple(int(np.clip(c + rng.randint(-15, 15), 0, 255)) for c in RGB[colour])
    if shape == NEUTRAL:  # soft edges: a patch of colour, not a figure
        layer = Image.new("L", (size, size), 0)
        ImageDraw.Draw(layer).polygon(pts, fill=255)
        layer = layer.filter(ImageFilter.GaussianBlur(radius=3 * _SUPERSAMPLE))
        img.paste(Image.new("RGB", (size, size), fill), mask=layer)
    else:
        ImageDraw.Draw(img).polygon(pts, fill=fill)
    return img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def sample(n, seed=0, paraphrase_prob=0.3, neutral_prob=0.0):
    """n random (image, caption, shape, colour) examples; `neutral_prob` of them show the neutral blob."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        shape = NEUTRAL if rng.random() < neutral_prob else rng.choice(SHAPES)
        colour = rng.choice(COLOURS)
        text = rng.choice(TEMPLATES).format(colour=colour, shape=NEUTRAL) if shape == NEUTRAL else caption(
            shape, colour, rng, paraphrase_prob)
        out.append((render(shape, colour, rng), text, shape, colour))
    return out


def to_tensor_batch(images):
    """PIL images -> float tensor (N, 3, H, W) in [-1, 1], as diffusers' VAEs expect."""
    import torch

    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

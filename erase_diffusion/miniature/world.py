"""The miniature world: 32x32 images of one filled, coloured shape (64x32 for two), on a plain background, with captions.

The vocabulary is fixed because evaluation depends on it: the judge classifies into exactly these shapes and colours.
Variation is deliberately modest (the judge needs a recognisable shape, and a UNet trained for minutes on two CPU
cores learns shape only when position, size and rotation do not drown it).

Phrasing comes in two kinds. *Training* paraphrases and templates may reach anything, erasure data included.
*Held-out* ones (`HELD_OUT_PARAPHRASES`, `HELD_OUT_TEMPLATES`, `HELD_OUT_PAIR_TEMPLATES`) exist to measure whether an
erasure holds on wording it never saw: evaluation reads them, nothing that erases may. The base learns every
paraphrase (a word means nothing to a model that never saw it), but never sees a held-out template: it learns to
ignore wording it does not know from caption noise (filler words, dropped words, shuffled clauses) instead.
"""

import math
import random
import re

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
# The first two of each may be used anywhere; the last two are held out (evaluation only).
PARAPHRASES = {
    "circle": ("disc", "round shape", "orb", "dot"),
    "square": ("box", "four-sided shape", "block", "tile"),
    "triangle": ("three-sided shape", "wedge", "pyramid", "delta"),
    "star": ("five-pointed shape", "pentagram", "twinkle", "spiky shape"),
    "heart": ("love symbol", "valentine shape", "cupid shape", "romance symbol"),
    "cross": ("plus sign", "plus symbol", "addition sign", "swiss emblem"),
}
HELD_OUT_PER_SHAPE = 2
TRAIN_PARAPHRASES = {s: p[:-HELD_OUT_PER_SHAPE] for s, p in PARAPHRASES.items()}
HELD_OUT_PARAPHRASES = {s: p[-HELD_OUT_PER_SHAPE:] for s, p in PARAPHRASES.items()}
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
# Wording no training caption has: its words are outside the tokenizer's vocabulary (they split into characters,
# as an unknown name does in SD's BPE) or in an order no template uses.
HELD_OUT_TEMPLATES = (
    "an illustration of a {colour} {shape}",
    "one small {colour} {shape} on a plain background",
    "{colour} {shape}, in flat colours",
    "my favourite {colour} {shape} here",
)
# Two objects: the first named is drawn in the left half, the second in the right half.
PAIR_TEMPLATES = (
    "a {colour1} {shape1} and a {colour2} {shape2}",
    "a {colour1} {shape1} with a {colour2} {shape2}",
    "a {colour1} {shape1} next to a {colour2} {shape2}",
    "{colour1} {shape1} and {colour2} {shape2}",
    "a picture of a {colour1} {shape1} and a {colour2} {shape2}",
)
HELD_OUT_PAIR_TEMPLATES = (
    "an illustration of a {colour1} {shape1} and a {colour2} {shape2}",
    "a {colour1} {shape1} beside a {colour2} {shape2}",
)
EXTRA_WORDS = ("a", "an", "the", "of", "in", "on", "photo", "shape", "object", "thing", "small", "big", "with")
# Known filler words for caption noise (random letter strings stand in for words the vocabulary lacks).
FILLER_WORDS = ("the", "this", "nice", "simple", "little", "bright", "very", "cute", "large", "tiny", "single", "some",
                "clean", "neat", "pretty", "just", "look", "new", "old", "real")

IMAGE_SIZE = 32
PAIR_SIZE = (2 * IMAGE_SIZE, IMAGE_SIZE)  # (width, height) of a two-object scene: one object per 32x32 half
_SUPERSAMPLE = 4  # draw at 4x and downsample: anti-aliased edges without a rasteriser of our own
ROTATION_DEG = 15.0  # modest variation: see module docstring
RADIUS_PX = (10.0, 14.5)
CENTRE_JITTER_PX = 3.0


def shape_words(shape, held_out=False):
    """How the world names `shape`: its word first, then its training paraphrases (and held-out ones when asked)."""
    return (shape,) + TRAIN_PARAPHRASES.get(shape, ()) + (HELD_OUT_PARAPHRASES.get(shape, ()) if held_out else ())


def all_captions(shape, colour):
    """Every training caption of (shape, colour): training templates with the word and its training paraphrases."""
    return [t.format(colour=colour, shape=s) for t in TEMPLATES for s in shape_words(shape)]


def _name(shape, rng, paraphrase_prob, held_out):
    if shape not in PARAPHRASES or rng.random() >= paraphrase_prob:
        return shape
    return rng.choice(PARAPHRASES[shape] if held_out else TRAIN_PARAPHRASES[shape])


def caption(shape, colour, rng, paraphrase_prob=0.3, held_out_paraphrases=False):
    """A random training caption of (shape, colour); the base's training passes held_out_paraphrases=True."""
    return rng.choice(TEMPLATES).format(colour=colour, shape=_name(shape, rng, paraphrase_prob, held_out_paraphrases))


def pair_caption(objects, rng, paraphrase_prob=0.3, held_out_paraphrases=False):
    """A random training caption of two (shape, colour) objects, named in drawing order (left, right)."""
    (s1, c1), (s2, c2) = objects
    return rng.choice(PAIR_TEMPLATES).format(
        colour1=c1, shape1=_name(s1, rng, paraphrase_prob, held_out_paraphrases),
        colour2=c2, shape2=_name(s2, rng, paraphrase_prob, held_out_paraphrases))


def _nonsense_word(rng):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))


def noisy(text, rng, keep=()):
    """Caption noise for training the base, so unseen wording does not derail it: random filler words (known ones,
    or letter strings the vocabulary lacks), a dropped word, clauses in another order. Words in `keep` (colours and
    shape names) are never dropped; two-object captions keep their clause order, which fixes left and right."""
    words = text.split()
    if rng.random() < 0.3 and len(words) > 2:
        droppable = [i for i, w in enumerate(words) if w.strip(",") not in keep]
        if droppable:
            del words[rng.choice(droppable)]
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        filler = rng.choice(FILLER_WORDS) if rng.random() < 0.5 else _nonsense_word(rng)
        words.insert(rng.randint(0, len(words)), filler)
    text = " ".join(words)
    clauses = re.split(r",\s*| (?=on a plain background)", text)
    if len(clauses) > 1 and rng.random() < 0.5:
        rng.shuffle(clauses)
        text = ", ".join(c.strip() for c in clauses if c.strip())
    return text


def content_words(shapes=SHAPES):
    """Colours and every shape name (paraphrase words included): what caption noise must not drop."""
    words = set(COLOURS) | {NEUTRAL}
    for s in shapes:
        for name in shape_words(s, held_out=True):
            words.update(name.split())
    return words


def vocabulary():
    """Every word a training caption can contain (the tokenizer gives each a single token). Held-out templates add
    nothing: their new words are spelt out in characters, as an unknown word is in SD's BPE."""
    words = set(EXTRA_WORDS) | set(FILLER_WORDS) | set(SHAPES) | set(COLOURS) | {NEUTRAL}
    for phrases in PARAPHRASES.values():
        for phrase in phrases:
            words.update(phrase.replace("-", " ").split())
    for template in TEMPLATES + PAIR_TEMPLATES:
        words.update(w for w in template.replace(",", " ").split() if "{" not in w)
    return sorted(words)


def parse(prompt):
    """The (shape, colour) objects a prompt names, in order; colour None when none is named before the shape.

    Reads every paraphrase (held-out ones too) and the neutral blob, so a drawn scene can be checked against what
    was asked for."""
    text = " " + re.sub(r"[^a-z\- ]", " ", prompt.lower()) + " "
    names = sorted(((n, s) for s in DRAWN for n in shape_words(s, held_out=True)), key=lambda x: -len(x[0]))
    found = []
    for name, shape in names:
        for m in re.finditer(rf"(?<=[ ]){re.escape(name)}(?=[ ])", text):
            if not any(a < m.end() and m.start() < b for a, b, _ in found):
                found.append((m.start(), m.end(), shape))
    found.sort()
    objects, last = [], 0
    for start, end, shape in found:
        before = [w for w in text[last:start].split() if w in COLOURS]
        objects.append((shape, before[-1] if before else None))
        last = end
    return objects


def image_size(prompt):
    """(width, height) the miniature draws `prompt` at: 64x32 when it names two objects, else 32x32."""
    return PAIR_SIZE if len(parse(prompt)) >= 2 else (IMAGE_SIZE, IMAGE_SIZE)


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


def _draw(img, shape, colour, left, rng):
    """Draw `shape` in `colour` into the 32x32 cell of supersampled `img` whose left edge is at x = `left` pixels."""
    radius = rng.uniform(*RADIUS_PX) * _SUPERSAMPLE
    cx = (left + IMAGE_SIZE / 2 + rng.uniform(-CENTRE_JITTER_PX, CENTRE_JITTER_PX)) * _SUPERSAMPLE
    cy = (IMAGE_SIZE / 2 + rng.uniform(-CENTRE_JITTER_PX, CENTRE_JITTER_PX)) * _SUPERSAMPLE
    if shape == NEUTRAL:
        radius *= 0.7
    theta = math.radians(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    cos, sin = math.cos(theta), math.sin(theta)
    pts = [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in _outline(shape, rng)]
    fill = tuple(int(np.clip(c + rng.randint(-15, 15), 0, 255)) for c in RGB[colour])
    if shape == NEUTRAL:  # soft edges: a patch of colour, not a figure
        layer = Image.new("L", img.size, 0)
        ImageDraw.Draw(layer).polygon(pts, fill=255)
        layer = layer.filter(ImageFilter.GaussianBlur(radius=3 * _SUPERSAMPLE))
        img.paste(Image.new("RGB", img.size, fill), mask=layer)
    else:
        ImageDraw.Draw(img).polygon(pts, fill=fill)


def render_scene(objects, rng=None):
    """One RGB PIL image of the (shape, colour) objects side by side, one per 32x32 cell, on one background shade."""
    rng = rng or random.Random()
    width = IMAGE_SIZE * len(objects)
    shade = rng.randint(150, 250)
    img = Image.new("RGB", (width * _SUPERSAMPLE, IMAGE_SIZE * _SUPERSAMPLE), (shade, shade, shade))
    for k, (shape, colour) in enumerate(objects):
        _draw(img, shape, colour, k * IMAGE_SIZE, rng)
    return img.resize((width, IMAGE_SIZE), Image.Resampling.BOX)


def render(shape, colour, rng=None):
    """Render one 32x32 RGB PIL image of `shape` in `colour` with random size, position, rotation and background."""
    return render_scene([(shape, colour)], rng)


def random_object(rng, neutral_prob=0.0):
    return (NEUTRAL if rng.random() < neutral_prob else rng.choice(SHAPES)), rng.choice(COLOURS)


def sample(n, seed=0, paraphrase_prob=0.3, neutral_prob=0.0):
    """n random (image, caption, shape, colour) examples; `neutral_prob` of them show the neutral blob."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        shape, colour = random_object(rng, neutral_prob)
        out.append((render(shape, colour, rng), caption(shape, colour, rng, paraphrase_prob), shape, colour))
    return out


def sample_pairs(n, seed=0, paraphrase_prob=0.3, neutral_prob=0.0):
    """n random two-object (64x32 image, caption, [(shape, colour), (shape, colour)]) examples, left object first."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        objects = [random_object(rng, neutral_prob), random_object(rng, neutral_prob)]
        out.append((render_scene(objects, rng), pair_caption(objects, rng, paraphrase_prob), objects))
    return out


def to_tensor_batch(images):
    """PIL images -> float tensor (N, 3, H, W) in [-1, 1], as diffusers' VAEs expect."""
    import torch

    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

"""What the two miniature CLIPs (the model's own and the independent judge) share: data pools, loss, zero-shot eval."""

import random

import torch
import torch.nn.functional as F

from . import world

KEEP = world.content_words()  # what caption noise never drops
NOISE_PROB = 0.5  # share of captions with noise: the clean templates stay the common case


class Pool:
    """A fixed pool of rendered images; captions are re-drawn every batch so the text tower sees every phrasing
    (every paraphrase, held-out ones included: the base must know what they mean), with caption noise when asked."""

    def __init__(self, n, seed, neutral_prob=0.0, noise=False):
        rng = random.Random(seed)
        self.noise = noise
        self.rng = random.Random(seed + 1)
        self.shapes, self.colours, images = [], [], []
        for _ in range(n):
            shape = world.NEUTRAL if rng.random() < neutral_prob else rng.choice(world.SHAPES)
            colour = rng.choice(world.COLOURS)
            images.append(world.render(shape, colour, rng))
            self.shapes.append(shape)
            self.colours.append(colour)
        self.pixels = world.to_tensor_batch(images)  # [-1, 1]
        names = list(world.SHAPES) + [world.NEUTRAL]
        self.labels = torch.tensor([names.index(s) * len(world.COLOURS) + world.COLOURS.index(c)
                                    for s, c in zip(self.shapes, self.colours)])

    def batch(self, size):
        idx = torch.tensor(self.rng.sample(range(len(self.shapes)), size))
        captions = [self.caption(self.shapes[i], self.colours[i]) for i in idx.tolist()]
        return self.pixels[idx], captions, self.labels[idx]

    def caption(self, shape, colour):
        text = world.caption(shape, colour, self.rng, held_out_paraphrases=True)
        return world.noisy(text, self.rng, KEEP) if self.noise and self.rng.random() < NOISE_PROB else text


def pair_scenes(n, seed, neutral_prob=1 / 13):
    """(pixels of n two-object 64x32 scenes, their [(shape, colour), (shape, colour)] objects, left first)."""
    rng = random.Random(seed)
    objects = [[world.random_object(rng, neutral_prob), world.random_object(rng, neutral_prob)] for _ in range(n)]
    return world.to_tensor_batch([world.render_scene(o, rng) for o in objects]), objects


def multi_positive_clip_loss(img_emb, txt_emb, labels, logit_scale):
    """Symmetric CLIP loss where every pair with the same (shape, colour) label counts as a positive.

    With 36 labels a batch of hundreds repeats each label many times; plain InfoNCE would push identical
    meanings apart.
    """
    img_emb, txt_emb = F.normalize(img_emb, dim=-1), F.normalize(txt_emb, dim=-1)
    logits = logit_scale * img_emb @ txt_emb.t()
    target = (labels[:, None] == labels[None, :]).float()
    target = target / target.sum(1, keepdim=True)
    return 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.t().log_softmax(1)).sum(1).mean())


def class_prompts(shapes=world.SHAPES):
    """The prompts "a {colour} {shape}", shape-major."""
    return [f"a {c} {s}" for s in shapes for c in world.COLOURS]


@torch.no_grad()
def zero_shot(encode_image, encode_text, pixels, shapes, colours, batch_size=256, labels=world.SHAPES):
    """Shape and colour accuracy of a CLIP on images, classifying into the "a {colour} {shape}" prompts of `labels`."""
    txt = F.normalize(encode_text(class_prompts(labels)), dim=-1)
    probs = []
    for i in range(0, len(pixels), batch_size):
        img = F.normalize(encode_image(pixels[i:i + batch_size]), dim=-1)
        probs.append((100.0 * img @ txt.t()).softmax(-1))
    probs = torch.cat(probs).view(-1, len(labels), len(world.COLOURS))
    shape_pred = probs.sum(2).argmax(1)
    colour_pred = probs.sum(1).argmax(1)
    shape_true = torch.tensor([labels.index(s) for s in shapes])
    colour_true = torch.tensor([world.COLOURS.index(c) for c in colours])
    per_shape = {s: (shape_pred[shape_true == k] == k).float().mean().item() for k, s in enumerate(labels)
                 if (shape_true == k).any()}
    return {"shape": (shape_pred == shape_true).float().mean().item(),
            "colour": (colour_pred == colour_true).float().mean().item(), "per_shape": per_shape}


def cosine_lr(step, total, warmup):
    """Linear warm-up then cosine decay to zero, as a LambdaLR multiplier."""
    import math

    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

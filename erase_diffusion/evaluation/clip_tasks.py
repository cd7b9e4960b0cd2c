"""CLIP's own tasks, the CLIPErase paper's evaluation: zero-shot classification and image<->text retrieval of the
unlearned CLIP against the original, on rendered images of the forget and the retain concepts.

The unlearned CLIP is the base's full CLIP with its text tower replaced by the erased text encoder (and its vision
tower by the erasure's clip/ when the erasure trained it).
"""

import os
import random

import torch
import torch.nn.functional as F

from ..miniature import clip_path, world
from ..miniature.contrastive import zero_shot


def load_clips(base, erased_dir, erased_text_encoder):
    """{'original': (encode_image, encode_text), 'unlearned': (...)} for the base's CLIP and the unlearned one."""
    from transformers import CLIPModel, CLIPTokenizer

    device = erased_text_encoder.device
    clip = CLIPModel.from_pretrained(clip_path(base)).eval().to(device)
    tokenizer = CLIPTokenizer.from_pretrained(clip_path(base))
    unlearned_dir = os.path.join(erased_dir, "clip")
    vision = CLIPModel.from_pretrained(unlearned_dir).eval().to(device) if os.path.isdir(unlearned_dir) else clip

    def ids(texts):
        return tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids

    # Features come back on the CPU, where the zero-shot and retrieval bookkeeping lives.
    def image_encoder(model):
        return lambda pixels: model.visual_projection(model.vision_model(pixel_values=pixels.to(device)).pooler_output).cpu()

    def text_encoder(tower, projection):
        return lambda texts: projection(tower(input_ids=ids(texts).to(device)).pooler_output).cpu()

    return {"original": (image_encoder(clip), text_encoder(clip.text_model, clip.text_projection)),
            "unlearned": (image_encoder(vision), text_encoder(erased_text_encoder, clip.text_projection))}


def render_set(per_concept, seed):
    """`per_concept` renders of every shape, colours cycling: (pixels in [-1, 1], shapes, colours)."""
    rng = random.Random(seed)
    shapes, colours, images = [], [], []
    for shape in world.SHAPES:
        for k in range(per_concept):
            colour = world.COLOURS[k % len(world.COLOURS)]
            images.append(world.render(shape, colour, rng))
            shapes.append(shape)
            colours.append(colour)
    return world.to_tensor_batch(images), shapes, colours


def recall_at(similarity, query_labels, item_labels, ks=(1, 5)):
    """{R@k: share of queries whose top k items include one with the query's (shape, colour) label}."""
    top = similarity.topk(max(ks), dim=1).indices
    hit = torch.tensor([[item_labels[j] == query_labels[i] for j in row] for i, row in enumerate(top.tolist())])
    return {f"R@{k}": hit[:, :k].any(1).float() for k in ks}


@torch.no_grad()
def retrieval(encode_image, encode_text, pixels, shapes, colours, concepts):
    """Image->text and text->image R@1/R@5 over one caption per image, split into forget and retain queries."""
    labels = list(zip(shapes, colours))
    img = F.normalize(encode_image(pixels), dim=-1)
    txt = F.normalize(encode_text([f"a {c} {s}" for s, c in labels]), dim=-1)
    forget = torch.tensor([s in concepts for s in shapes])
    out = {}
    for direction, sim in (("image_to_text", img @ txt.t()), ("text_to_image", txt @ img.t())):
        for k, hits in recall_at(sim, labels, labels).items():
            out.setdefault(direction, {})[k] = {"forget": hits[forget].mean().item(), "retain": hits[~forget].mean().item()}
    return out


def clip_tasks(base, erased_dir, erased_text_encoder, concepts, per_concept=24, seed=0):
    """Zero-shot accuracy (forget concepts, retain concepts, colour) and retrieval, original vs unlearned CLIP."""
    pixels, shapes, colours = render_set(per_concept, seed + 50_000)  # renders no training run has seen
    out = {}
    for name, (encode_image, encode_text) in load_clips(base, erased_dir, erased_text_encoder).items():
        with torch.no_grad():
            zs = zero_shot(encode_image, encode_text, pixels, shapes, colours)
        retain = [s for s in world.SHAPES if s not in concepts]
        out[name] = {
            "zero_shot": {"forget": sum(zs["per_shape"][c] for c in concepts) / len(concepts),
                          "retain": sum(zs["per_shape"][s] for s in retain) / max(1, len(retain)),
                          "colour": zs["colour"], "per_concept": zs["per_shape"]},
            "retrieval": retrieval(encode_image, encode_text, pixels, shapes, colours, concepts),
        }
    return out

"""The independent judge: zero-shot shape and colour classification with a CLIP that is not the one being unlearned.

Leak scores in erasure papers come from such a classifier (UCE and MACE use ViT-B/32 on real SD); here it is the
miniature's open_clip judge, a ResNet CLIP trained apart from the model under erasure.
"""

import os

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from ..errors import UsageError
from ..miniature import judge_path, world
from ..miniature.contrastive import class_prompts


class Judge:
    """Classifies images into the world's shapes and colours, with probabilities."""

    def __init__(self, path=None, device="cpu"):
        # imported here: open_clip pulls in torchvision and dynamo (~2 s), which an erasure without judged validation
        # (and every reader of open_image) does not need
        import open_clip

        from ..miniature.train_judge import IMAGE_MEAN, IMAGE_STD, LABELS, MODEL_NAME, WEIGHTS

        path = str(path or judge_path())
        weights = os.path.join(path, WEIGHTS)
        if not os.path.isfile(weights):
            raise UsageError(f"judge weights not found: {weights} (expected a judge/ dir from the miniature)")
        open_clip.add_model_config(os.path.join(path, f"{MODEL_NAME}.json"))
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            MODEL_NAME, image_mean=IMAGE_MEAN, image_std=IMAGE_STD)
        self.model.load_state_dict({k: v.float() for k, v in load_file(weights).items()})
        self.model.eval().to(device)
        self.tokenizer = open_clip.get_tokenizer(MODEL_NAME)
        self.device = device
        self.labels = LABELS
        self.text_features = self.encode_text(class_prompts(LABELS))

    @torch.no_grad()
    def encode_text(self, texts):
        return F.normalize(self.model.encode_text(self.tokenizer(texts).to(self.device)), dim=-1)

    @torch.no_grad()
    def encode_images(self, images, batch_size=256):
        feats = []
        for i in range(0, len(images), batch_size):
            x = torch.stack([self.preprocess(im.convert("RGB")) for im in images[i:i + batch_size]]).to(self.device)
            feats.append(F.normalize(self.model.encode_image(x), dim=-1))
        return torch.cat(feats)

    def probabilities(self, images):
        """(shape_probs (N, 7), colour_probs (N, 6)), ordered as self.labels (the shapes, then the neutral blob)
        and world.COLOURS."""
        probs = (100.0 * self.encode_images(images) @ self.text_features.t()).softmax(-1)
        probs = probs.view(-1, len(self.labels), len(world.COLOURS))
        return probs.sum(2), probs.sum(1)

    def classify(self, images):
        """One dict per image: top shape and colour with their probabilities, and every shape's probability."""
        shape_p, colour_p = self.probabilities(images)
        out = []
        for sp, cp in zip(shape_p, colour_p):
            s, c = int(sp.argmax()), int(cp.argmax())
            out.append({"shape": self.labels[s], "shape_prob": float(sp[s]), "colour": world.COLOURS[c],
                        "colour_prob": float(cp[c]), "shape_probs": dict(zip(self.labels, sp.tolist()))})
        return out

    def classify_scenes(self, images, named=None):
        """Per two-object 64x32 image: the verdicts of its left and right halves, and with `named` (per image, the
        [(shape, colour), (shape, colour)] its prompt asked for) whether the drawing matches (see match_scene)."""
        flat = self.classify([half for im in images for half in halves(im)])
        out = []
        for k in range(len(images)):
            left, right = flat[2 * k], flat[2 * k + 1]
            verdict = {"left": left, "right": right, "shapes": [left["shape"], right["shape"]]}
            if named is not None:
                verdict.update(match_scene(left, right, named[k]))
            out.append(verdict)
        return out

    def classify_any(self, images):
        """classify() for 32x32 images, classify_scenes() for 64x32 ones, in the given order."""
        return [self.classify_scenes([im])[0] if im.width > im.height else self.classify([im])[0] for im in images]


def halves(image):
    """The left and right 32x32 halves of a two-object 64x32 scene."""
    w, h = image.size
    return image.crop((0, 0, w // 2, h)), image.crop((w // 2, 0, w, h))


def match_scene(left, right, named):
    """Does a scene's drawing match what was named? `named`: [(shape, colour or None)] * 2.

    The set of shapes drawn must equal the set named (either order). Each named object's colour is read from the
    half that shows its shape (its own side first), or from its own side when no half does."""
    drawn = [left, right]
    used, colours_right = set(), []
    for k, (shape, colour) in enumerate(named):
        side = next((j for j in (k, 1 - k) if j not in used and drawn[j]["shape"] == shape), k)
        used.add(side)
        colours_right.append(colour is None or drawn[side]["colour"] == colour)
    return {"shapes_match": sorted(v["shape"] for v in drawn) == sorted(s for s, _ in named),
            "colours_right": colours_right}


def open_image(path):
    """Open an image file, or raise UsageError naming it when it does not decode."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is not a readable image ({e.__class__.__name__})") from None

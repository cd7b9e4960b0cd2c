"""Stable Diffusion families: which one a pipeline is, its text encoders, and the full CLIP each pairs with.

SD 1.x's text encoder is the text tower of openai/clip-vit-large-patch14, SD 2.x's of OpenCLIP ViT-H, SDXL has both
ViT-L (`text_encoder`) and bigG (`text_encoder_2`, with projection). The text tower that learns starts from the
pipeline's own encoder weights (a fine-tune's encoder differs from the original CLIP); the vision tower and
projections come from the paired CLIP.
"""

import json
import os
from dataclasses import dataclass

import torch
from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextModel, CLIPTextModelWithProjection,
                          CLIPTokenizer, CLIPVisionModelWithProjection)

from . import miniature
from .errors import UsageError
from .generate import check_pipeline_dir

DEFAULT_CLIP = {
    "sd1": ("openai/clip-vit-large-patch14",),
    "sd2": ("laion/CLIP-ViT-H-14-laion2B-s32B-b79K",),
    "sdxl": ("openai/clip-vit-large-patch14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"),
}


def detect_family(path):
    """'miniature', 'sd1', 'sd2' or 'sdxl' for a local pipeline directory; UsageError for anything else."""
    check_pipeline_dir(path)
    with open(os.path.join(path, "model_index.json")) as f:
        index = json.load(f)
    if "text_encoder" not in index or "unet" not in index:
        raise UsageError(f"{path!r} is a {index.get('_class_name', 'diffusers')} pipeline, not Stable Diffusion "
                         "(expected text_encoder and unet components)")
    if miniature.is_miniature(path):
        return "miniature"
    if "text_encoder_2" in index:
        return "sdxl"
    with open(os.path.join(path, "text_encoder", "config.json")) as f:
        act = json.load(f).get("hidden_act")
    return "sd2" if act == "gelu" else "sd1"  # OpenCLIP ViT-H uses GELU, OpenAI's ViT-L quick-GELU


def default_clip_paths(family, path):
    return (miniature.clip_path(path),) if family == "miniature" else DEFAULT_CLIP[family]


@dataclass
class Encoder:
    """One text encoder under erasure with the frozen parts of its paired CLIP."""

    name: str  # pipeline component: "text_encoder" or "text_encoder_2"
    text_encoder: torch.nn.Module
    tokenizer: CLIPTokenizer
    vision: torch.nn.Module
    visual_projection: torch.nn.Module
    text_projection: torch.nn.Module | None  # None when the encoder carries its own (SDXL's text_encoder_2)
    logit_scale: float
    image_processor: CLIPImageProcessor
    penultimate: bool  # SDXL's UNet reads hidden_states[-2], SD 1/2's the last hidden state

    def tokenize(self, captions):
        if not captions:  # an empty caption set (e.g. the paper's objective has no token-state captions)
            return torch.zeros(0, self.tokenizer.model_max_length, dtype=torch.long)
        return self.tokenizer(list(captions), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    def text(self, model, input_ids):
        """(conditioning the UNet reads, projected pooled embedding CLIP compares with images) under `model`.

        Each distinct caption runs once: template captions repeat within a batch, and indexing the outputs back
        out sums the copies' gradients, so losses and gradients are those of the full batch.
        """
        unique, inverse = torch.unique(input_ids, dim=0, return_inverse=True)
        states, emb = self._text_outputs(model, unique)
        # index_select, not states[inverse]: its backward is an index_add, ~8x cheaper than advanced indexing's
        return states.index_select(0, inverse), emb.index_select(0, inverse)

    def pooled(self, model, input_ids):
        """Only the projected pooled embedding, computed on the captions cut after their last end token: CLIP's
        text tower is causal, so what follows the end token cannot change it (a third of the work at 12 of 32)."""
        eos = self.tokenizer.eos_token_id
        length = int((input_ids == eos).int().argmax(1).max()) + 1
        return self.text(model, input_ids[:, :length])[1]

    def _text_outputs(self, model, input_ids):
        out = model(input_ids, output_hidden_states=self.penultimate)
        states = out.hidden_states[-2] if self.penultimate else out.last_hidden_state
        if self.text_projection is None:
            emb = out.text_embeds
            states = torch.cat([states.flatten(1), emb], dim=1)  # SDXL's UNet also reads the pooled embedding
        else:
            emb = self.text_projection(out.pooler_output)
        return states, emb

    def images(self, pixels):
        return self.visual_projection(self.vision(pixel_values=pixels).pooler_output)

    def pixels(self, pil_images):
        return self.image_processor(images=[im.convert("RGB") for im in pil_images], return_tensors="pt").pixel_values


def load_clip(path):
    """The whole CLIPModel (both towers), for saving an unlearned full CLIP."""
    try:
        return CLIPModel.from_pretrained(path)
    except OSError:
        raise UsageError(f"CLIP model {path!r} not found locally (nothing is downloaded here); pass "
                         "--clip_model_name_or_path with a local full CLIPModel directory") from None


def load_clip_parts(path):
    """(config, vision tower with projection, text projection, logit scale) of a full CLIP, never its text tower:
    the pipeline's own encoder takes that place, so pairing with ViT-L/14 loads 0.5 GB less."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    from transformers.utils import logging as hf_logging

    try:
        config = CLIPConfig.from_pretrained(path)
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the text tower's keys are skipped on purpose: no "unexpected keys" report
        try:
            vision = CLIPVisionModelWithProjection.from_pretrained(path)
        finally:
            hf_logging.set_verbosity(level)
        weights = cached_file(path, "model.safetensors")
    except OSError:
        raise UsageError(f"CLIP model {path!r} not found locally as safetensors (nothing is downloaded here); pass "
                         "--clip_model_name_or_path with a local full CLIPModel directory") from None
    with safe_open(weights, "pt") as f:
        projection = torch.nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        projection.weight.data.copy_(f.get_tensor("text_projection.weight"))
        logit_scale = f.get_tensor("logit_scale").exp().item()
    return config, vision, projection, logit_scale


def load_encoders(path, family, clip_paths):
    """The pipeline's text encoder(s), each paired with its full CLIP; UsageError when a CLIP does not match."""
    names = ["text_encoder", "text_encoder_2"] if family == "sdxl" else ["text_encoder"]
    if len(clip_paths) != len(names):
        raise UsageError(f"{family} has {len(names)} text encoder(s) but {len(clip_paths)} CLIP model(s) were given "
                         f"({', '.join(clip_paths)}); pass one --clip_model_name_or_path per encoder")
    encoders = []
    for name, clip_path in zip(names, clip_paths):
        cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
        text_encoder = cls.from_pretrained(path, subfolder=name)
        tok_dir = os.path.join(path, name.replace("text_encoder", "tokenizer"))
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
        config, vision, text_projection, logit_scale = load_clip_parts(clip_path)
        mine, theirs = text_encoder.config, config.text_config
        if (mine.hidden_size, mine.vocab_size) != (theirs.hidden_size, theirs.vocab_size):
            raise UsageError(f"CLIP {clip_path!r} has a text tower of hidden size {theirs.hidden_size} and vocab "
                             f"{theirs.vocab_size}, but the pipeline's {name} has {mine.hidden_size} and "
                             f"{mine.vocab_size}: pass the CLIP this encoder was taken from")
        try:
            processor = CLIPImageProcessor.from_pretrained(clip_path)
        except OSError:  # no preprocessor_config.json beside the weights: CLIP's own defaults at its image size
            size = config.vision_config.image_size
            processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size=size)
        encoders.append(Encoder(
            name=name, text_encoder=text_encoder, tokenizer=tokenizer,
            vision=vision.vision_model.eval().requires_grad_(False),
            visual_projection=vision.visual_projection.eval().requires_grad_(False),
            text_projection=None if name == "text_encoder_2" else text_projection.eval().requires_grad_(False),
            logit_scale=logit_scale, image_processor=processor, penultimate=family == "sdxl"))
    return encoders

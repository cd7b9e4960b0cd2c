"""The hub's canonical key layout for every weight file erase-diffusion writes.

transformers >= 5.6 flattened `CLIPTextModel` (no `.text_model`), and its `save_pretrained` writes keys without the
`text_model.` prefix. transformers 4.x then reports every such key "not used" and hands back a *randomly initialised*
encoder, with only a warning. The SD 1.x / 2.x / XL repositories on the hub, and AdvUnlearn's plug-in encoders, use
`text_model.*` (and `text_projection.weight` for `CLIPTextModelWithProjection`), which both transformers lines load.
So text encoders are written here, in that layout, and LoRA files name their layers as diffusers' `load_lora_weights`
reads them in both lines (`text_encoder.text_model.encoder.layers.N...`).
"""

import os

from safetensors.torch import save_file

WEIGHTS = "model.safetensors"
PREFIX = {"CLIPTextModel": "text_model.", "CLIPVisionModel": "vision_model."}


def canonical_state_dict(model):
    """`model`'s weights keyed as the hub's checkpoints key them, whatever transformers line is running."""
    prefix = PREFIX.get(type(model).__name__)
    state = model.state_dict()
    if prefix and not hasattr(model, prefix[:-1]):  # flattened by transformers >= 5.6
        state = {prefix + k: v for k, v in state.items()}
    return {k: v.detach().contiguous() for k, v in state.items()}


def save_model(model, directory):
    """config.json and model.safetensors (canonical keys) into `directory`: what from_pretrained reads in either line."""
    os.makedirs(directory, exist_ok=True)
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(directory)
    save_file(canonical_state_dict(model), os.path.join(directory, WEIGHTS), metadata={"format": "pt"})


def save_pipeline(pipe, directory):
    """`pipe.save_pretrained`, with its text encoder(s) rewritten in the canonical layout."""
    pipe.save_pretrained(directory)
    for name in ("text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            save_model(module, os.path.join(directory, name))


def canonical_lora_state_dict(text_encoder, peft_state):
    """A text encoder's LoRA weights (peft's names for its modules) keyed as in the canonical layout."""
    prefix = PREFIX.get(type(text_encoder).__name__)
    if prefix and not hasattr(text_encoder, prefix[:-1]):
        return {k if k.startswith(prefix) else prefix + k: v for k, v in peft_state.items()}
    return dict(peft_state)

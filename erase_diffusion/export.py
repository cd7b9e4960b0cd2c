"""`erase-diffusion export OUT --format single_file`: the erased text encoder(s) as one safetensors file in the original
Stable Diffusion checkpoint layout, for tools that read original checkpoints rather than diffusers folders.

Key names are diffusers' own conversion mapping (`DIFFUSERS_TO_LDM_MAPPING`, read back by its single-file loaders and
written by its scripts/convert_diffusers_to_original_*.py), not invented here:
- SD 1.x and the miniature: `cond_stage_model.transformer.text_model.*`;
- SD 2.x: `cond_stage_model.model.*` in OpenCLIP's layout (`transformer.resblocks.N`, q/k/v fused into `in_proj_*`);
- SDXL: `conditioner.embedders.0.transformer.text_model.*` (ViT-L) and `conditioner.embedders.1.model.*` (bigG,
  OpenCLIP layout, `text_projection` transposed).
A LoRA erasure is merged into its base's encoder(s) first, at full strength.
"""

import os
import re

import torch

from .errors import UsageError

FORMATS = ("single_file",)
PREFIXES = {  # (family, text encoder index) -> (prefix, OpenCLIP layout?)
    ("sd1", 0): ("cond_stage_model.transformer.", False),
    ("miniature", 0): ("cond_stage_model.transformer.", False),
    ("sd2", 0): ("cond_stage_model.model.", True),
    ("sdxl", 0): ("conditioner.embedders.0.transformer.", False),
    ("sdxl", 1): ("conditioner.embedders.1.model.", True),
}
_QKV = re.compile(r"^(.*)\.self_attn\.([qkv])_proj\.(weight|bias)$")


def openclip_layout(state):
    """Canonical transformers keys of a CLIP text tower -> OpenCLIP's (the inverse of diffusers'
    convert_open_clip_checkpoint)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    layers, parts = DIFFUSERS_TO_LDM_MAPPING["openclip"]["layers"], DIFFUSERS_TO_LDM_MAPPING["openclip"]["transformer"]

    def block(key):
        for diffusers_part, ldm_part in parts.items():
            key = key.replace(diffusers_part, ldm_part)
        return "transformer." + key

    out, qkv = {}, {}
    for key, value in state.items():
        if key in layers:
            # OpenCLIP multiplies by text_projection (width x dim); a torch Linear stores its transpose
            out[layers[key]] = value.t().contiguous() if layers[key] == "text_projection" else value
        elif m := _QKV.match(key):
            qkv.setdefault((m[1], m[3]), {})[m[2]] = value
        elif key.startswith("text_model.encoder.layers."):
            out[block(key)] = value
        else:
            raise ValueError(f"no OpenCLIP name for text-encoder weight {key!r}")
    for (layer, kind), q_k_v in qkv.items():
        out[f"{block(layer)}.attn.in_proj_{kind}"] = torch.cat([q_k_v["q"], q_k_v["k"], q_k_v["v"]])
    return out


def original_layout(family, index, state):
    """One text encoder's canonical state dict under its name in an original SD checkpoint."""
    prefix, openclip = PREFIXES[(family, index)]
    return {prefix + k: v.contiguous() for k, v in (openclip_layout(state) if openclip else state).items()}


def erased_encoders(info, base=None):
    """{component: plain erased text encoder} of an erasure (a LoRA merged into its base's encoder at strength 1)."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if info["format"] == "full":
        return {name: (CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel)
                .from_pretrained(info["path"], subfolder=name) for name in info["encoders"]}
    from pipelines import load_erased_pipeline

    base = base or info["record"].get("base_model")
    if not base:
        raise UsageError(f"{info['path']!r} is a LoRA erasure without a base_model in erasure.json: pass "
                         "--pretrained_model_name_or_path")
    pipe = load_erased_pipeline(base, info["path"])
    pipe.fuse_lora(components=info["encoders"], lora_scale=1.0)
    pipe.unload_lora_weights()  # after fusing: plain modules holding the merged weights
    return {name: getattr(pipe, name) for name in info["encoders"]}


def family_of(info, base=None):
    family = info["record"].get("family")
    if family:
        return family
    from .families import detect_family

    if base or info["record"].get("base_model"):
        return detect_family(base or info["record"]["base_model"])
    raise UsageError(f"{info['path']!r} has no erasure.json naming its model family: pass --pretrained_model_name_or_path")


def export(erased, fmt="single_file", output=None, base=None):
    """Write the erasure in `erased` as `fmt`; returns the path written. UsageError (nothing written) on bad input."""
    from safetensors.torch import save_file

    from pipelines import read_erasure

    from .layout import canonical_state_dict

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not known: expected one of {', '.join(FORMATS)}")
    info = read_erasure(erased)
    output = output or os.path.join(erased, "text_encoders.sd_original.safetensors")
    if os.path.exists(output):
        raise UsageError(f"--output {output!r} exists: remove it or name another file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise UsageError(f"--output {output!r}: its directory does not exist")
    family = family_of(info, base)
    state = {}
    for name, module in erased_encoders(info, base).items():
        index = 1 if name == "text_encoder_2" else 0
        if (family, index) not in PREFIXES:
            raise UsageError(f"no original layout is known for {name} of a {family!r} model")
        state.update(original_layout(family, index, canonical_state_dict(module)))
    metadata = {"format": "pt", "family": family, "concepts": ",".join(info["record"].get("concepts") or [])}
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return output

"""Reading an erasure directory (full text-encoder weights or a text-encoder LoRA) and checking it fits a base."""

import json
import os
from types import SimpleNamespace

from erase_diffusion.errors import UsageError

LORA_FILE = "pytorch_lora_weights.safetensors"
ENCODERS = ("text_encoder", "text_encoder_2")


def read_erasure(erased):
    """{'format': 'full'|'lora', 'encoders': [...], 'record': erasure.json or {}} for an erasure dir; UsageError else."""
    erased = str(erased)
    if not os.path.isdir(erased):
        raise UsageError(f"erasure dir not found: {erased!r}")
    record = {}
    if os.path.isfile(os.path.join(erased, "erasure.json")):
        with open(os.path.join(erased, "erasure.json")) as f:
            record = json.load(f)
    if os.path.isfile(os.path.join(erased, LORA_FILE)):
        from safetensors import safe_open

        with safe_open(os.path.join(erased, LORA_FILE), "pt") as f:
            prefixes = {k.split(".", 1)[0] for k in f.keys()}
        return {"format": "lora", "encoders": [e for e in ENCODERS if e in prefixes], "record": record, "path": erased}
    encoders = [e for e in ENCODERS if os.path.isfile(os.path.join(erased, e, "config.json"))]
    if not encoders:
        raise UsageError(f"{erased!r} holds neither text_encoder/ nor {LORA_FILE}: not an erasure from erase-diffusion")
    return {"format": "full", "encoders": encoders, "record": record, "path": erased}


def base_encoder_configs(base):
    """{component: its config dict} of the text encoder(s) of a local pipeline dir, read without loading weights."""
    out = {}
    for name in ENCODERS:
        path = os.path.join(base, name, "config.json")
        if os.path.isfile(path):
            with open(path) as f:
                out[name] = SimpleNamespace(**json.load(f))
    return out


def check_fits_dir(info, base):
    """check_fits against a base dir on disk (configs only: cheap, before any model is loaded)."""
    check_fits(info, {name: SimpleNamespace(config=cfg) for name, cfg in base_encoder_configs(base).items()})


def check_fits(info, base_components):
    """UsageError when the erasure was made for another kind of base (hidden size, vocab, SDXL vs SD 1/2)."""
    base_encoders = [e for e in ENCODERS if base_components.get(e) is not None]
    if sorted(info["encoders"]) != sorted(base_encoders):
        raise UsageError(f"erasure {info['path']!r} has {', '.join(info['encoders'])} but the base pipeline has "
                         f"{', '.join(base_encoders)}: it was made for another model family")
    if info["format"] != "full":
        return
    for name in info["encoders"]:
        with open(os.path.join(info["path"], name, "config.json")) as f:
            mine = json.load(f)
        theirs = base_components[name].config
        if (mine.get("hidden_size"), mine.get("vocab_size")) != (theirs.hidden_size, theirs.vocab_size):
            raise UsageError(f"erasure {name} has hidden size {mine.get('hidden_size')} and vocab {mine.get('vocab_size')}, "
                             f"the base's has {theirs.hidden_size} and {theirs.vocab_size}: made for another base")

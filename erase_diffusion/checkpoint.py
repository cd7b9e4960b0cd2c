"""Checkpoints in safetensors only (no pickle): trainable weights, Adam state and the step.

Batches are drawn from a generator seeded by (seed, step, rank), so weights + optimiser state + step are all a
resumed run needs to end with the same weights as an uninterrupted one.
"""

import json
import os
import re
import shutil

import torch
from safetensors.torch import load_file, save_file

from .errors import UsageError

_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def trainable_state(modules):
    """{module_name.param_name: tensor} of the parameters that learn."""
    return {f"{name}.{k}": p.detach().contiguous() for name, m in modules.items() for k, p in m.named_parameters()
            if p.requires_grad}


def save(output_dir, step, modules, optimizer, total_limit=None, extra=None):
    """Write checkpoint-{step} atomically (temp dir, then rename) and keep at most `total_limit` of them; `extra`:
    more tensors the loop needs to resume exactly (the adversarial inputs, the frozen UNet's generator)."""
    final = os.path.join(output_dir, "checkpoints", f"checkpoint-{step}")
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file(trainable_state(modules), os.path.join(tmp, "weights.safetensors"))
    if extra:
        save_file(extra, os.path.join(tmp, "extra.safetensors"))
    opt = optimizer.state_dict()
    tensors = {f"{idx}.{k}": v.contiguous() for idx, st in opt["state"].items() for k, v in st.items()}
    save_file(tensors, os.path.join(tmp, "optimizer.safetensors"))
    with open(os.path.join(tmp, "state.json"), "w") as f:
        json.dump({"step": step, "param_groups": opt["param_groups"]}, f)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    if total_limit:
        for old in list_checkpoints(output_dir)[:-total_limit]:
            shutil.rmtree(old)
    return final


def list_checkpoints(output_dir):
    root = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    found = [(int(m.group(1)), os.path.join(root, d)) for d in os.listdir(root) if (m := _PATTERN.match(d))]
    return [p for _, p in sorted(found)]


def resolve(output_dir, resume_from_checkpoint):
    """The checkpoint dir to resume from: 'latest' (None when there is none yet) or an explicit path."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = resume_from_checkpoint
    if not os.path.isdir(path):
        path = os.path.join(output_dir, "checkpoints", resume_from_checkpoint)
    if not os.path.isfile(os.path.join(path, "state.json")):
        raise UsageError(f"checkpoint not found: {resume_from_checkpoint!r} (expected 'latest' or a checkpoint-N "
                         f"dir under {os.path.join(output_dir, 'checkpoints')})")
    return path


def load(path, modules, optimizer):
    """Restore weights and optimiser state from `path`; returns (the step it was saved at, its extra tensors)."""
    weights = load_file(os.path.join(path, "weights.safetensors"))
    for name, m in modules.items():
        prefix = f"{name}."
        own = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        params = dict(m.named_parameters())
        for k, v in own.items():
            if k not in params or params[k].shape != v.shape:
                have = tuple(params[k].shape) if k in params else "nothing"
                raise UsageError(f"checkpoint {path!r} holds {name}.{k} of shape {tuple(v.shape)} but this run has "
                                 f"{have}: resume with the flags and data the checkpoint was made with")
        with torch.no_grad():
            for k, v in own.items():
                params[k].copy_(v)
    with open(os.path.join(path, "state.json")) as f:
        meta = json.load(f)
    flat = load_file(os.path.join(path, "optimizer.safetensors"))
    state = {}
    for key, v in flat.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    extra = os.path.join(path, "extra.safetensors")
    return meta["step"], (load_file(extra) if os.path.isfile(extra) else {})

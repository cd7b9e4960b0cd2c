"""A reusable retain set: the base pipeline's own images of what an erasure keeps, generated once per base model and
generation settings, cached on disk and reused by every later erasure. Only the forget images are new per concept.

    RETAIN_CACHE_DIR/<base fingerprint>/<settings key>/<concept>.safetensors

- base fingerprint: sha256 of the files of every component named in the base's model_index.json (what the images
  depend on), remembered per (path, size, mtime) so an unchanged base is not hashed twice;
- settings key: sha256 of the templates, images per concept, seed, denoising steps, guidance and image size (and, for
  the two-object guard's scenes of the anchor beside each kept concept, their kind: retain_pairs' `kind`);
- an entry holds `images` (uint8, N x H x W x 3) and, in its metadata, the captions and the sha256 of the images.
An entry that does not load, or whose digest does not match, is regenerated and never used. Entries are written to a
temporary file and renamed into place, so two runs writing the same entry at once leave one complete file.
`erase-diffusion cache` lists the cache; `erase-diffusion cache --clear` empties it.
"""

import hashlib
import json
import os
import shutil

import numpy as np
import torch
from PIL import Image

DEFAULT_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "erase-diffusion",
                           "retain")


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def fingerprint(base, cache_dir):
    """sha256 over the files of the base's components (weights and configs), cached by path, size and mtime."""
    with open(os.path.join(base, "model_index.json")) as f:
        components = sorted(k for k, v in json.load(f).items() if isinstance(v, list) and v[0] is not None)
    files = sorted(os.path.join(root, n) for c in components for root, _, names in os.walk(os.path.join(base, c))
                   for n in names)
    stamp = [[os.path.relpath(p, base), os.path.getsize(p), os.stat(p).st_mtime_ns] for p in files]
    memo_path = os.path.join(cache_dir, "fingerprints.json")
    memo = {}
    if os.path.isfile(memo_path):
        try:
            with open(memo_path) as f:
                memo = json.load(f)
        except (OSError, ValueError):
            memo = {}
    key = _sha(json.dumps([os.path.abspath(base), stamp]).encode())
    if key not in memo:
        h = hashlib.sha256()
        for p in [os.path.join(base, "model_index.json")] + files:
            h.update(os.path.relpath(p, base).encode())
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        memo[key] = h.hexdigest()[:16]
        os.makedirs(cache_dir, exist_ok=True)
        _write_atomic(memo_path, json.dumps(memo).encode())
    return memo[key]


def settings_key(templates, n_per_concept, seed, steps, guidance, size, kind=None):
    fields = [list(templates), n_per_concept, seed, steps, guidance, list(size)] + ([kind] if kind else [])
    return _sha(json.dumps(fields).encode())[:16]


def _write_atomic(path, data):
    tmp = f"{path}.tmp-{os.getpid()}-{id(data)}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def save_entry(path, images, captions):
    from safetensors.torch import save

    pixels = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    meta = {"captions": json.dumps(captions), "digest": _sha(pixels.tobytes())}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write_atomic(path, save({"images": torch.from_numpy(pixels)}, metadata=meta))


def load_entry(path):
    """(images, captions) of a complete, intact entry; None for a missing, unreadable or corrupt one."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        return None
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            pixels = f.get_tensor("images").numpy()
        captions = json.loads(meta["captions"])
    except Exception:  # a truncated or foreign file: regenerate it, whatever broke
        return None
    if meta.get("digest") != _sha(pixels.tobytes()) or len(captions) != len(pixels):
        return None
    return [Image.fromarray(p) for p in pixels], captions


def retain_pairs(pipe, base, concepts, templates, n_per_concept, seed, steps, guidance, cache_dir, generate_fn,
                 prompts_of=None, kind=None):
    """The retain images and captions of `concepts`, from the cache where present and intact, generated (and cached)
    otherwise. Returns (images, captions, {'cached': [...], 'generated': [...]}). `prompts_of`: concept -> (prompts,
    seed offsets), by default its templates in turn; other sets of images of kept concepts (the two-object guard's
    scenes, `prompts.guard_prompts`) pass their own and a `kind` that keys them apart."""
    from .data import concept_prompts

    prompts_of = prompts_of or (lambda concept: concept_prompts(concept, templates, n_per_concept))
    size = (pipe.unet.config.sample_size * pipe.vae_scale_factor,) * 2
    folder = None
    if cache_dir:
        folder = os.path.join(cache_dir, fingerprint(base, cache_dir),
                              settings_key(templates, n_per_concept, seed, steps, guidance, size, kind))
    images, captions, stats = [], [], {"cached": [], "generated": []}
    for concept in concepts:
        path = os.path.join(folder, f"{_sha(concept.encode())[:12]}.safetensors") if folder else None
        entry = load_entry(path) if path else None
        if entry is None:
            prompts, offsets = prompts_of(concept)
            entry = (generate_fn(pipe, prompts, [seed + k for k in offsets]), prompts)
            stats["generated"].append(concept)
            if path:
                save_entry(path, *entry)
        else:
            stats["cached"].append(concept)
        images += entry[0]
        captions += entry[1]
    return images, captions, stats


def describe(cache_dir):
    """[(entry dir, files, bytes)] under the cache."""
    out = []
    for root, _, names in os.walk(cache_dir):
        entries = [n for n in names if n.endswith(".safetensors")]
        if entries:
            out.append((root, len(entries), sum(os.path.getsize(os.path.join(root, n)) for n in entries)))
    return sorted(out)


def clear(cache_dir):
    shutil.rmtree(cache_dir, ignore_errors=True)

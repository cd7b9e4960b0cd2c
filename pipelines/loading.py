"""Erased text encoders as drop-in parts of diffusers pipelines: one pipeline, or original and erased side by side."""

import copy

import torch

from erase_diffusion.errors import UsageError
from erase_diffusion.generate import check_pipeline_dir, generate
from erase_diffusion.versions import check_lora_support

from .erasure import ENCODERS, check_fits, read_erasure

ADAPTER = "erasure"


def _pipeline_class(pipeline_class):
    import diffusers

    if pipeline_class is None:
        return diffusers.DiffusionPipeline  # the class named in the base's model_index.json
    if isinstance(pipeline_class, str):
        cls = getattr(diffusers, pipeline_class, None)
        if cls is None or not isinstance(cls, type) or not issubclass(cls, diffusers.DiffusionPipeline):
            raise UsageError(f"unknown pipeline class {pipeline_class!r} (expected a diffusers pipeline class name, "
                             "e.g. StableDiffusionImg2ImgPipeline)")
        return cls
    return pipeline_class


def _check_strength(strength):
    if not 0.0 <= float(strength) <= 1.0:
        raise UsageError(f"erasure strength {strength} must be within [0, 1] (0: original, 1: fully erased)")


def _apply(pipe, info, strength, base_encoders):
    """Put the erasure into `pipe`: full weights blended by strength, or the LoRA at adapter scale `strength`."""
    if info["format"] == "lora":
        check_lora_support()
        try:
            pipe.load_lora_weights(info["path"], adapter_name=ADAPTER)
        except (ValueError, RuntimeError, KeyError) as e:
            raise UsageError(f"LoRA in {info['path']!r} does not fit this base's text encoder(s) "
                             f"(rank/target mismatch: {str(e).splitlines()[0][:200]})") from None
        pipe.set_adapters([ADAPTER], adapter_weights=[float(strength)])
        return pipe
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    for name in info["encoders"]:
        cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
        base = base_encoders[name]
        erased = cls.from_pretrained(info["path"], subfolder=name, dtype=base.dtype).to(base.device)
        if strength != 1.0:  # partial erasure: move the weights part of the way from the base's
            with torch.no_grad():
                for p, b in zip(erased.parameters(), base.parameters()):
                    p.copy_(b + float(strength) * (p - b))
        pipe.register_modules(**{name: erased.eval()})
    return pipe


def load_erased_pipeline(base, erased, pipeline_class=None, strength=1.0, dtype=torch.float32, device="cpu", **kwargs):
    """Any diffusers pipeline of `base` with the erased text encoder(s) of `erased` swapped in (full weights or
    LoRA), in the dtype and on the device asked for. Weights load bit for bit as saved when strength is 1."""
    _check_strength(strength)
    base = check_pipeline_dir(base)
    info = read_erasure(erased)
    kwargs.setdefault("safety_checker", None)
    pipe = _pipeline_class(pipeline_class).from_pretrained(base, dtype=dtype, **kwargs).to(device)
    check_fits(info, pipe.components)
    pipe.set_progress_bar_config(disable=True)
    return _apply(pipe, info, strength, {n: getattr(pipe, n) for n in info["encoders"]})


def paired_pipelines(base, erased, pipeline_class=None, strength=1.0, dtype=torch.float32, device="cpu", original=None,
                     **kwargs):
    """(original, erased) sharing the very same UNet, VAE and tokenizer objects; only the text encoder(s) differ.

    Built from the original's components rather than `DiffusionPipeline.from_pipe`, which casts shared modules to
    float32 unless given `dtype=` and so can change the original pipeline behind the caller's back. Pass an already
    loaded `original` to pair several erasures with one base.
    """
    _check_strength(strength)
    base = check_pipeline_dir(base)
    info = read_erasure(erased)
    kwargs.setdefault("safety_checker", None)
    if original is None:
        original = _pipeline_class(pipeline_class).from_pretrained(base, dtype=dtype, **kwargs).to(device)
    check_fits(info, original.components)
    original.set_progress_bar_config(disable=True)
    components = dict(original.components)
    components["scheduler"] = original.scheduler.__class__.from_config(original.scheduler.config)  # stateful: own copy
    base_encoders = {n: original.components[n] for n in ENCODERS if original.components.get(n) is not None}
    if info["format"] == "lora":  # the adapter goes into copies: the original's encoders stay untouched
        components.update({n: copy.deepcopy(m) for n, m in base_encoders.items()})
    if "requires_safety_checker" in original.config:  # SD 1/2 only; keeps the base's choice, no second warning
        components["requires_safety_checker"] = original.config.requires_safety_checker
    erased_pipe = original.__class__(**components)
    erased_pipe.set_progress_bar_config(disable=True)
    return original, _apply(erased_pipe, info, strength, base_encoders)


def compare(original, erased, prompts, seeds, **generate_kwargs):
    """(original images, erased images) for the same prompts and noise seeds: differences come from the encoders."""
    return generate(original, prompts, seeds, **generate_kwargs), generate(erased, prompts, seeds, **generate_kwargs)

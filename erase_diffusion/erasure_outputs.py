"""What an erasure run leaves in --output_dir, written to a staging dir and moved into place at the end.

erasure.json moves last: a directory with erasure.json is a complete erasure, one without it is not.
"""

import json
import os
import shutil
import time

from . import __version__
from .costs import unet_evaluations
from .layout import canonical_lora_state_dict, save_model
from .model_card import model_card

FULL, LORA = "full", "lora"
LORA_FILE = "pytorch_lora_weights.safetensors"


def save_encoders(args, setup, unwrapped, staging):
    """The erased encoder(s), in the hub's canonical key layout (see layout.py), beside the tokenizer(s)."""
    if args.lora_rank:
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
        from peft.utils import get_peft_model_state_dict

        layers, metadata = {}, {}
        for enc in setup.encoders:
            model = unwrapped[enc.name]
            layers[f"{enc.name}_lora_layers"] = canonical_lora_state_dict(model, get_peft_model_state_dict(model))
            # rank and alpha travel with the file, so a loader never has to guess the adapter's scale
            metadata[f"{enc.name}_lora_adapter_metadata"] = model.peft_config["default"].to_dict()
        cls = StableDiffusionXLPipeline if setup.family == "sdxl" else StableDiffusionPipeline
        cls.save_lora_weights(staging, safe_serialization=True, **layers, **metadata)
    else:
        for enc in setup.encoders:
            save_model(unwrapped[enc.name], os.path.join(staging, enc.name))
    for enc in setup.encoders:
        enc.tokenizer.save_pretrained(os.path.join(staging, enc.name.replace("text_encoder", "tokenizer")))
    if args.train_vision_tower:
        save_unlearned_clip(args, setup, unwrapped, staging)


def save_unlearned_clip(args, setup, unwrapped, staging):
    """The whole unlearned CLIP (both towers) for CLIP's own zero-shot and retrieval use."""
    from .families import default_clip_paths, load_clip

    paths = args.clip_model_name_or_path or default_clip_paths(setup.family, args.pretrained_model_name_or_path)
    for k, (enc, path) in enumerate(zip(setup.encoders, paths)):
        clip = load_clip(path)
        text = unwrapped[enc.name]
        clip.text_model.load_state_dict(getattr(text, "text_model", text).state_dict())
        clip.vision_model.load_state_dict(unwrapped[f"vision_{k}"].state_dict())
        save_model(clip, os.path.join(staging, "clip" if k == 0 else f"clip_{k + 1}"))


def erased_modules(args, setup, unwrapped):
    """{component: module} to swap into the base pipeline (LoRA adapters merged into a copy)."""
    import copy

    out = {}
    for enc in setup.encoders:
        module = unwrapped[enc.name]
        if args.lora_rank:
            from peft.tuners.tuners_utils import BaseTunerLayer

            module = copy.deepcopy(module)  # merging in place would change the weights being saved
            for layer in module.modules():
                if isinstance(layer, BaseTunerLayer):
                    layer.merge()
        out[enc.name] = module.eval()
    return out


def validate(args, setup, unwrapped, staging):
    """Judged before/after generations on the miniature (the judge knows only its world); grids for a person."""
    if setup.family != "miniature" or args.validation_seeds <= 0:
        return None
    from .generate import load_pipeline, make_grid, save_atomic
    from .evaluation.judge import Judge
    from .evaluation.metrics import compare, summary_line
    from .miniature import judge_path

    pipe = load_pipeline(args.pretrained_model_name_or_path)
    judge = Judge(judge_path(args.pretrained_model_name_or_path))
    with unet_evaluations(pipe.unet) as evals:
        metrics, rows, before, after = compare(pipe, judge, erased_modules(args, setup, unwrapped), setup.concepts,
                                               args.validation_seeds, args.num_inference_steps, args.guidance_scale,
                                               setup.retain)
    cols = len(rows) // (len(rows) // 6) if len(rows) >= 6 else len(rows)
    save_atomic(make_grid(before, cols=cols, scale=2), os.path.join(staging, "validation_before.png"))
    save_atomic(make_grid(after, cols=cols, scale=2), os.path.join(staging, "validation_after.png"))
    metrics["summary"] = summary_line(metrics)
    metrics["unet_evals"] = evals["unet"]
    return metrics


def levers(args):
    """Which parts of the objective ran (the paper's three terms always do)."""
    anchored = args.objective == "anchored"
    return {"paper_terms": True, "token_state_terms": anchored, "mine_neighbours": anchored and args.mine_neighbours,
            "vocabulary_captions": args.vocabulary_captions if anchored else 0,
            "suffix_captions": args.suffix_captions if anchored else 0,
            "ema_decay": args.ema_decay if args.use_ema else 0.0,
            "ema_power": args.ema_power if args.use_ema else 0.0,
            "pair_prompts": anchored and args.pair_prompts,
            "tie_names": bool(args.tie_names),
            "name_row": args.lambda_name_row if anchored and args.tie_names else 0.0,
            "hard_pairs": args.hard_pairs if anchored and args.pair_prompts else 0,
            "caption_noise": args.caption_noise if anchored else 0.0,
            "keep_unconditional": anchored and args.keep_unconditional,
            "pair_padding": args.lambda_pair_padding if anchored and args.pair_prompts else 0.0,
            "pair_anchor": args.lambda_pair_anchor if anchored and args.pair_prompts else 0.0,
            "adversarial": anchored and bool(args.adversarial_every),
            "adversarial_concept_weight": args.adversarial_concept_weight if anchored and args.adversarial_every else 0.0,
            "adversarial_linear": (linear := args.lambda_adversarial_linear if anchored and args.adversarial_every else 0.0),
            "linear_gradient_contrast": bool(linear) and args.linear_gradient_contrast,
            "linear_gradient_match": bool(linear) and args.linear_gradient_match,
            "adversarial_suffix": (suffix := args.lambda_adversarial_suffix if anchored and args.adversarial_every else 0.0),
            "suffix_target": args.suffix_target if suffix else None,
            "adversarial_words": args.lambda_adversarial_words if anchored and args.adversarial_every else 0.0,
            "adversarial_unet": (outer := anchored and bool(args.adversarial_every) and args.lambda_adversarial_unet > 0),
            "unet_adversaries": args.unet_adversaries if outer else 0,
            "pair_guard": (guard := anchored and bool(args.adversarial_every) and args.lambda_pair_guard > 0),
            "pair_guard_latents": args.pair_guard_latents if guard else None,
            "unet_term": anchored and args.lambda_unet > 0}


def write_outputs(args, setup, unwrapped, final_losses, seconds, costs, on_phase=lambda name: None):
    staging = os.path.join(args.output_dir, ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        return _write(args, setup, unwrapped, final_losses, seconds, costs, staging, on_phase)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a failed run leaves no half-written erasure


def _write(args, setup, unwrapped, final_losses, seconds, costs, staging, on_phase):
    t = time.perf_counter()
    on_phase("saving")
    save_encoders(args, setup, unwrapped, staging)
    seconds["save"] = time.perf_counter() - t
    t = time.perf_counter()
    on_phase("validation")
    metrics = validate(args, setup, unwrapped, staging)
    seconds["validation"] = time.perf_counter() - t
    costs["unet_evals_validation"] = metrics.pop("unet_evals") if metrics else 0  # judging, not erasing
    record = {
        "erase_diffusion_version": __version__,
        "concepts": setup.concepts, "retain_concepts": setup.retain, "anchor": setup.anchor,
        "base_model": os.path.abspath(args.pretrained_model_name_or_path), "family": setup.family,
        "format": LORA if args.lora_rank else FULL, "objective": args.objective,
        "text_encoders": [enc.name for enc in setup.encoders],
        "levers": levers(args), "neighbours": setup.neighbours,
        "hard_pair_partners": setup.text.get("hard_partners", []),
        "tied_names": setup.tied_names,
        "token_state_captions": {k: len(v) for k, v in setup.text.items() if k not in ("core", "hard_partners")},
        "flags": {k: v for k, v in vars(args).items()}, "final_losses": final_losses, "judge_metrics": metrics,
        "seconds": {k: round(v, 3) for k, v in seconds.items()}, "costs": costs,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(os.path.join(staging, "README.md"), "w") as f:
        f.write(model_card(record))
    with open(os.path.join(staging, "erasure.json"), "w") as f:
        json.dump(record, f, indent=1, default=str)
    names = sorted(os.listdir(staging), key=lambda n: n == "erasure.json")
    for name in names:
        dest = os.path.join(args.output_dir, name)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.replace(os.path.join(staging, name), dest)
    return {"record": record, "summary": metrics["summary"] if metrics else None}

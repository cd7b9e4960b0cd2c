"""`make compat`: do erasures load bit-exact for a diffusers user still on transformers 4.x?

    .venv/bin/python scripts/compat_check.py [--workdir .venv-compat/work] [--steps 20]

1. Here (transformers 5, the project's venv): erase "triangle" from the miniature twice, full weights and LoRA, and
   record what transformers 5 computes with each (the reference).
2. In a throwaway venv pinned by scripts/compat.lock (transformers 4.57, diffusers 0.39, built once, minutes): load
   the full erasure with `CLIPTextModel.from_pretrained` and the LoRA with diffusers' `pipe.load_lora_weights`, and
   compare every tensor with the file, bit for bit, and the encoder's outputs with the reference.
   As a control, the same text encoder in transformers 5's own `save_pretrained` layout is loaded too: transformers
   4.x must report it as randomly initialised, which is the failure the canonical layout exists to prevent.
Prints one line per check and appends the result to benchmarks/results/compat.jsonl.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["a red triangle", "a blue three-sided shape on a plain background", "a green circle and a red triangle"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=os.path.join(ROOT, ".venv-compat", "work"), help="Erasures and references go here.")
    p.add_argument("--venv", default=os.path.join(ROOT, ".venv-compat"), help="The throwaway transformers-4 venv.")
    p.add_argument("--steps", type=int, default=20, help="Erase steps (the check is about files, not erasure quality).")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)  # step 2, run inside the old venv
    return p.parse_args(argv)


def make_erasures(work, steps):
    """Step 1, under transformers 5: full and LoRA erasures, a legacy-layout copy, and the reference outputs."""
    import shutil

    import torch
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    from erase_diffusion.miniature import model_path
    from erase_diffusion.train import main, parse_args as erase_args
    from pipelines import load_erased_pipeline

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    common = ["--concept", "triangle", "--max_train_steps", str(steps), "--validation_seeds", "0", "--report_to", "none",
              "--checkpointing_steps", "0"]
    main(erase_args([*common, "--output_dir", os.path.join(work, "full")]))
    main(erase_args([*common, "--output_dir", os.path.join(work, "lora"), "--lora_rank", "4"]))
    # the control: transformers 5's own layout. A model loaded from a canonical file remembers its key renaming and
    # saves it back, so the control is a model built in code, as a trainer's would be, holding the same weights.
    loaded = CLIPTextModel.from_pretrained(os.path.join(work, "full"), subfolder="text_encoder")
    fresh = CLIPTextModel(loaded.config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(os.path.join(work, "legacy", "text_encoder"))
    reference = {}
    for kind in ("full", "lora"):
        pipe = load_erased_pipeline(model_path(), os.path.join(work, kind))
        ids = pipe.tokenizer(PROMPTS, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             return_tensors="pt").input_ids
        with torch.no_grad():
            reference[kind] = pipe.text_encoder(ids)[0].contiguous()
        reference["ids"] = ids.contiguous()
    save_file(reference, os.path.join(work, "reference.safetensors"))
    return model_path()


def ensure_venv(venv):
    stamp = os.path.join(venv, ".installed")
    lock = os.path.join(ROOT, "scripts", "compat.lock")
    if os.path.isfile(stamp) and os.path.getmtime(stamp) > os.path.getmtime(lock):
        return os.path.join(venv, "bin", "python")
    print(f"building {venv} from scripts/compat.lock (once; a few minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    subprocess.run([py, "-m", "pip", "install", "-q", "-r", lock], check=True)
    open(stamp, "w").close()
    return py


def inner(work, base):
    """Step 2, under transformers 4.57 and diffusers 0.39: plain-library loads only, no erase_diffusion import."""
    import diffusers
    import torch
    import transformers
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import CLIPTextModel, CLIPTokenizerFast

    ref = load_file(os.path.join(work, "reference.safetensors"))
    out = {"transformers": transformers.__version__, "diffusers": diffusers.__version__}

    def load(path):
        model, info = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", output_loading_info=True)
        return model.eval(), info

    full, info = load(os.path.join(work, "full"))
    saved = load_file(os.path.join(work, "full", "text_encoder", "model.safetensors"))
    state = full.state_dict()
    out["full_keys_unused"] = len(info["unexpected_keys"]) + len(info["missing_keys"])
    out["full_bit_exact"] = set(saved) <= set(state) and all(torch.equal(saved[k], state[k]) for k in saved)
    with torch.no_grad():
        out["full_max_abs_diff"] = (full(ref["ids"])[0] - ref["full"]).abs().max().item()

    _, legacy = load(os.path.join(work, "legacy"))
    out["legacy_layout_keys_missing"] = len(legacy["missing_keys"])  # the control: 4.x initialises these randomly

    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(base, subfolder="vae"), unet=UNet2DConditionModel.from_pretrained(base, subfolder="unet"),
        text_encoder=load(base)[0], tokenizer=CLIPTokenizerFast.from_pretrained(base, subfolder="tokenizer"),
        scheduler=diffusers.DPMSolverMultistepScheduler.from_pretrained(base, subfolder="scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(os.path.join(work, "lora"), adapter_name="erasure")
    lora = load_file(os.path.join(work, "lora", "pytorch_lora_weights.safetensors"))
    loaded = {}
    for name, module in pipe.text_encoder.named_modules():
        for ab in ("lora_A", "lora_B"):
            if hasattr(module, ab) and "erasure" in getattr(module, ab):
                loaded[f"text_encoder.{name}.{ab}.weight"] = getattr(module, ab)["erasure"].weight
    out["lora_tensors"] = len(lora)
    out["lora_bit_exact"] = set(lora) == set(loaded) and all(torch.equal(lora[k], loaded[k]) for k in lora)
    with torch.no_grad():
        out["lora_max_abs_diff"] = (pipe.text_encoder(ref["ids"])[0] - ref["lora"]).abs().max().item()
    print(json.dumps(out))


def main(args):
    if args.inner:
        return inner(args.workdir, os.environ["COMPAT_BASE"])
    started = time.time()
    py = ensure_venv(args.venv)  # first: building it clears the venv dir, which holds the default workdir
    base = make_erasures(args.workdir, args.steps)
    run = subprocess.run([py, os.path.abspath(__file__), "--inner", "--workdir", args.workdir], capture_output=True,
                         text=True, env={**os.environ, "COMPAT_BASE": base, "PYTHONPATH": ""})
    if run.returncode:
        sys.exit(f"the transformers-4 check failed:\n{run.stderr[-3000:]}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    ok = (result["full_bit_exact"] and result["lora_bit_exact"] and result["full_keys_unused"] == 0
          and result["full_max_abs_diff"] < 1e-5 and result["lora_max_abs_diff"] < 1e-5
          and result["legacy_layout_keys_missing"] > 0)  # the control must fail, or the check cannot tell layouts apart
    print(f"transformers {result['transformers']} + diffusers {result['diffusers']}:")
    print(f"  full erasure (CLIPTextModel.from_pretrained): bit-exact {result['full_bit_exact']}, keys not used "
          f"{result['full_keys_unused']}, outputs max |diff| {result['full_max_abs_diff']:.1e}")
    print(f"  LoRA erasure (pipe.load_lora_weights): {result['lora_tensors']} tensors bit-exact {result['lora_bit_exact']},"
          f" outputs max |diff| {result['lora_max_abs_diff']:.1e}")
    print(f"  control, transformers 5's own save_pretrained layout: {result['legacy_layout_keys_missing']} weights "
          "missing, i.e. randomly initialised")
    record = {**result, "ok": ok, "seconds": round(time.time() - started, 1),
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "compat.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")
    print("compat: PASS" if ok else "compat: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))

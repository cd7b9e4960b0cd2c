"""Rebuild the whole miniature Stable Diffusion end to end: CLIP -> judge -> VAE -> UNet -> pipeline.

    python -m erase_diffusion.miniature.train --output_dir DIR

Stages run one after another (they share two CPU cores; running them side by side only slows each down).
`--stages` re-runs a subset into an existing DIR. A quality table closes the run and `training_report.json` keeps
every stage's seconds and metrics.
"""

import argparse
import json
import os
import time

STAGES = ("clip", "judge", "vae", "unet")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True, help="Directory for the pipeline, clip/ and judge/.")
    p.add_argument("--stages", default=",".join(STAGES), help=f"Comma-separated subset of {', '.join(STAGES)}.")
    p.add_argument("--unet_minutes", type=float, default=40.0, help="Training-time budget of the UNet stage.")
    p.add_argument("--tiny", action="store_true", help="A few steps of each stage on tiny models (for tests).")
    return p.parse_args(argv)


def stage_argv(stage, output_dir, unet_minutes, tiny):
    argv = ["--output_dir", output_dir]
    if stage == "unet":
        argv += ["--max_minutes", str(unet_minutes)]
    if tiny:
        argv += {
            "clip": ["--max_train_steps", "3", "--pool_size", "64", "--train_batch_size", "16", "--hidden_size", "32",
                     "--num_layers", "1", "--eval_size", "36"],
            "judge": ["--max_train_steps", "3", "--pool_size", "64", "--train_batch_size", "16", "--eval_size", "36"],
            "vae": ["--max_train_steps", "3", "--pool_size", "64", "--train_batch_size", "8", "--channels", "8"],
            "unet": ["--max_train_steps", "3", "--pool_size", "64", "--train_batch_size", "8", "--channels", "8",
                     "--eval_every_steps", "3", "--eval_seeds", "1"],
        }[stage]
    return argv


def main(args):
    from . import train_clip, train_judge, train_unet, train_vae

    modules = {"clip": train_clip, "judge": train_judge, "vae": train_vae, "unet": train_unet}
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"error: unknown stage(s) {unknown}; expected a subset of {list(STAGES)}")
    os.makedirs(args.output_dir, exist_ok=True)
    report_path = os.path.join(args.output_dir, "training_report.json")
    report = json.load(open(report_path)) if os.path.isfile(report_path) else {}
    for stage in stages:
        start = time.time()
        mod = modules[stage]
        metrics = mod.main(mod.parse_args(stage_argv(stage, args.output_dir, args.unet_minutes, args.tiny)))
        report[stage] = {"seconds": round(time.time() - start, 1), "metrics": metrics}
        with open(report_path, "w") as f:
            json.dump(report, f, indent=1)
    print_table(report)
    return report


def print_table(report):
    print("\nstage   seconds  quality")
    for stage in STAGES:
        if stage not in report:
            continue
        m = report[stage]["metrics"] or {}
        if stage in ("clip", "judge"):
            q = f"zero-shot shape {m['shape']:.1%}, colour {m['colour']:.1%} on fresh renders"
        elif stage == "vae":
            q = f"reconstruction MSE {m['recon_mse']:.4f} (pixels in [-1, 1])"
        else:
            q = (f"judged generations: shape {m['shape']:.1%} (worst {m['min_shape']:.1%}), colour {m['colour']:.1%} "
                 f"at step {m['step']}")
        print(f"{stage:<7} {report[stage]['seconds']:>7.0f}  {q}")
    total = sum(report[s]["seconds"] for s in STAGES if s in report)
    print(f"total   {total:>7.0f}  ({total / 60:.1f} min)")
    if "unet" in report and report["unet"]["metrics"]:
        print("per shape: " + ", ".join(f"{k} {v:.0%}" for k, v in report["unet"]["metrics"]["per_shape"].items()))


if __name__ == "__main__":
    main(parse_args())

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
    p.add_argument("--unet_minutes", type=float, default=60.0, help="Training-time budget of the UNet stage (the whole run stays within 90 min on 2 CPU cores).")
    p.add_argument("--quality_seeds", type=int, default=4, help="Seeds per prompt of the closing quality table (0: skip it).")
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
            "vae": ["--max_train_steps", "4", "--pool_size", "64", "--train_batch_size", "8", "--channels", "8"],
            "unet": ["--max_train_steps", "4", "--pool_size", "64", "--pair_pool_size", "32", "--train_batch_size", "8",
                     "--channels", "8", "--eval_seeds", "1"],
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
        write_json(report, report_path)
    if args.quality_seeds > 0 and "unet" in stages:
        start = time.time()
        report["quality"] = {**quality_table(args.output_dir, args.quality_seeds, tiny=args.tiny),
                             "seconds": round(time.time() - start, 1)}
        write_json(report, report_path)
    print_table(report)
    return report


def write_json(obj, path):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def quality_table(output_dir, seeds, tiny=False):
    """The issue's bars on the saved pipeline: single objects, held-out wording, two objects, the judge on renders."""
    from ..generate import load_pipeline
    from ..evaluation.judge import Judge
    from . import judge_path, world
    from .quality import held_out_quality, judged_quality, pair_quality

    pipe, judge = load_pipeline(output_dir), Judge(judge_path(output_dir))
    single, _ = judged_quality(pipe, judge, seeds)
    out = {"seeds": seeds, "single": single, **held_out_quality(pipe, judge, seeds), **pair_quality(pipe, judge, seeds)}
    fresh = world.sample(60 if tiny else 600, seed=987_654)
    verdicts = judge.classify([f[0] for f in fresh])
    scenes = world.sample_pairs(30 if tiny else 300, seed=987_655)
    on_scenes = judge.classify_scenes([s[0] for s in scenes], [s[2] for s in scenes])
    out["judge_renders"] = {
        "single_shape": sum(v["shape"] == f[2] for v, f in zip(verdicts, fresh)) / len(fresh),
        "single_colour": sum(v["colour"] == f[3] for v, f in zip(verdicts, fresh)) / len(fresh),
        "pair_shapes": sum(v["shapes_match"] for v in on_scenes) / len(on_scenes),
        "pair_colours": sum(sum(v["colours_right"]) for v in on_scenes) / (2 * len(on_scenes))}
    return out


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
            q = (f"judged generations: shape {m['shape']:.1%} (worst {m['min_shape']:.1%}), colour {m['colour']:.1%}; "
                 f"two objects {m['pair_both']:.1%}, their colours {m['pair_colour']:.1%} at step {m['step']}")
        print(f"{stage:<7} {report[stage]['seconds']:>7.0f}  {q}")
    total = sum(report[s]["seconds"] for s in STAGES if s in report)
    print(f"total   {total:>7.0f}  ({total / 60:.1f} min)")
    if "quality" in report:
        q = report["quality"]
        print(f"\nquality ({q['seeds']} seeds, 20 steps, guidance 5):")
        print(f"  single 'a {{colour}} {{shape}}': shape {q['single']['shape']:.1%} (worst {q['single']['min_shape']:.1%}),"
              f" colour {q['single']['colour']:.1%}")
        for key in ("held_out_paraphrases", "held_out_templates"):
            print(f"  {key.replace('_', ' ')}: shape {q[key]['shape']:.1%} (worst {q[key]['min_shape']:.1%})")
        print(f"  two objects: both shapes {q['pair_both']:.1%}, each object's colour {q['pair_colour']:.1%}")
        j = q["judge_renders"]
        print(f"  judge on fresh renders: shape {j['single_shape']:.1%}, colour {j['single_colour']:.1%}; "
              f"scenes {j['pair_shapes']:.1%}, colours {j['pair_colours']:.1%}")


if __name__ == "__main__":
    main(parse_args())

"""How erase cost grows with the number of concepts: 1, 2, 4, 6 on the miniature, 10 and 100 on a tiny random CLIP.

    nice -n 10 python benchmarks/scale.py                   # ~5-10 min on 2 cores
    python benchmarks/scale.py --smoke                      # 2 concepts on the tiny CLIP, 3 steps; what `make test` runs

Data grows with the concepts (a fixed number of forget images per concept, as a user would supply), the retain set
and the steps do not; so data and caching time and cached-feature memory grow linearly and the time per step stays
flat (the batch is fixed). The miniature has six shapes: erasing all six keeps its neutral blob (`--retain_concepts
blob`), the one thing left to retain; fewer keep the other shapes, as by default. The tiny random CLIP (SD 1.x
layout, SD's 49408-token vocabulary, hidden 32) reads captioned folders of random images, so 100 concepts cost no
rendering or generation.
"""

import argparse
import os
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import sd15  # noqa: E402
from benchmarks.common import RESULTS_DIR, append_results, erase_argv, median, run_erase, table  # noqa: E402

ORDER = ("triangle", "star", "heart", "cross", "circle", "square")  # concept k+1 adds ORDER[k]
COLUMNS = [("model", "model", None), ("concepts", "concepts", "{}"), ("n_forget", "forget pairs", "{}"),
           ("steps", "steps", "{}"), ("process_wall", "wall s (process)", "{:.1f}"), ("data", "data s", "{:.2f}"),
           ("cache", "caching s", "{:.2f}"), ("train", "steps s", "{:.1f}"), ("median_step_ms", "median step ms", "{:.1f}"),
           ("cached_feature_mib", "cached MiB", "{:.1f}"), ("peak_rss_mib", "peak RSS MiB", "{:.0f}")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--miniature_concepts", default="1,2,4,6", help="Concept counts on the miniature (1-6).")
    p.add_argument("--tiny_concepts", default="10,50,100", help="Concept counts on the tiny random CLIP.")
    p.add_argument("--max_train_steps", type=int, default=100, help="Steps per run (time per step is what scales).")
    p.add_argument("--train_batch_size", type=int, default=32, help="Forget and retain pairs per step.")
    p.add_argument("--forget_images_per_concept", type=int, default=192, help="Miniature forget renders per concept.")
    p.add_argument("--tiny_images_per_concept", type=int, default=8, help="Tiny-CLIP forget images per concept.")
    p.add_argument("--work_dir", default="/tmp/erase-bench-scale", help="Where the tiny model and folders are kept.")
    p.add_argument("--results_dir", default=RESULTS_DIR, help="Where scale.jsonl is appended.")
    p.add_argument("--smoke", action="store_true", help="Two concepts on the tiny CLIP, 3 steps, few images.")
    return p.parse_args(argv)


def counts(text):
    return [int(x) for x in text.split(",") if x.strip()]


def row(model, n, rec, steps):
    s = rec["seconds"]
    timed = rec["step_seconds"][1:] or rec["step_seconds"]
    return {"model": model, "concepts": n, "n_forget": rec["n_forget"], "n_retain": rec["n_retain"], "steps": steps,
            "process_wall": rec["process_wall"], "data": s["data"], "models": s["models"], "cache": s["cache"],
            "train": s["train"], "steps_per_second": s["steps_per_second"], "median_step_ms": 1000 * median(timed),
            "cached_feature_mib": rec["cached_feature_bytes"] / 2**20, "peak_rss_mib": rec["peak_rss_mib"]}


def main(args):
    mini, tiny = counts(args.miniature_concepts), counts(args.tiny_concepts)
    if args.smoke:
        # one process (the miniature path is what erase_speed.py smoke-runs): keeps `make test` short
        mini, tiny, args.max_train_steps, args.train_batch_size = [], [2], 3, 8
        args.forget_images_per_concept = args.tiny_images_per_concept = 4
        args.work_dir += "-smoke"
    if any(n < 1 or n > len(ORDER) for n in mini):
        raise SystemExit(f"--miniature_concepts: each count 1..{len(ORDER)} (the miniature has {len(ORDER)} shapes)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="erase-scale-") as tmp:
        for n in mini:
            extra = ["--num_forget_images", str(n * args.forget_images_per_concept)]
            if n == len(ORDER):
                extra += ["--retain_concepts", "blob"]  # every shape is erased; the neutral blob is what remains
            if args.smoke:
                extra += ["--num_retain_images", "16"]
            rec = run_erase(erase_argv(os.path.join(tmp, f"mini{n}"), list(ORDER[:n]), args.max_train_steps,
                                       args.train_batch_size, extra=extra))
            rows.append(row("miniature", n, rec, args.max_train_steps))
            print(f"miniature, {n} concept(s): {rows[-1]['process_wall']:.1f} s", flush=True)
        if tiny:
            pipe_dir, clip_dir = sd15.build(os.path.join(args.work_dir, "model"), sd15.TEXT_TINY, sd15.VISION_TINY)
        for n in tiny:
            concepts = [f"concept{k}" for k in range(n)]
            forget, retain = sd15.concept_data(args.work_dir, concepts, args.tiny_images_per_concept, 64,
                                               sd15.VISION_TINY["image_size"])
            extra = ["--pretrained_model_name_or_path", pipe_dir, "--clip_model_name_or_path", clip_dir,
                     "--data_source", "folder", "--forget_data_dir", forget, "--retain_data_dir", retain]
            rec = run_erase(erase_argv(os.path.join(tmp, f"tiny{n}"), concepts, args.max_train_steps,
                                       args.train_batch_size, extra=extra))
            rows.append(row("tiny random CLIP", n, rec, args.max_train_steps))
            print(f"tiny random CLIP, {n} concept(s): {rows[-1]['process_wall']:.1f} s", flush=True)
    path = append_results(args.results_dir, "scale", [{"measurement": "run", **r} for r in rows], smoke=args.smoke)
    print(table(rows, COLUMNS))
    png = os.path.join(args.results_dir, "scale.png")
    plot(rows, png)
    print(f"results appended to {path}; plot: {png}")
    return {"rows": rows, "path": path, "plot": png}


def plot(rows, path):
    """Process wall and its parts against the number of concepts, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.4), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["concepts"])
        xs = [r["concepts"] for r in mine]
        for key, label in (("process_wall", "whole process"), ("train", "steps"), ("cache", "caching"),
                           ("data", "data")):
            ax.plot(xs, [r[key] for r in mine], marker="o", label=label)
        ax.set_title(f"{model}: cost of one erase run")
        ax.set_xlabel("concepts erased in one run")
        ax.set_ylabel("seconds")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(parse_args())

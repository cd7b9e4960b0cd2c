"""How much self-generated data an erasure by name needs: judged quality (the attack-suite evaluation) against the
number of forget images, the number of retain images and the denoising steps that generate them, with the UNet
evaluations each setting costs. Each row changes one setting from the generated-data defaults. An unjudged first
run fills the retain cache (as a user's second erasure on the same base would find it), so the forget-image rows pay
only for their forget images; the retain-image and step rows generate their own retain set (cold).

    nice -n 10 python benchmarks/data_curve.py               # ~25 min on 2 cores; writes data_curve.png
    python benchmarks/data_curve.py --smoke                  # tiny budgets; what `make test` runs
"""

import argparse
import os
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.baselines import COLUMNS, eval_args, run_ours  # noqa: E402
from benchmarks.common import RESULTS_DIR, append_results, table  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concept", default="triangle", help="Miniature shape(s) to erase, comma-separated.")
    p.add_argument("--forget_images", default="8,16,32,64,192", help="Forget-image counts to try (warm retain cache).")
    p.add_argument("--retain_images", default="40,120,384", help="Retain-image counts to try (other settings at their defaults; each generates its retain set).")
    p.add_argument("--data_steps", default="10,20", help="Denoising steps of the generated images to try.")
    p.add_argument("--erase_flags", default="", help="Extra flags for every erasure (space-separated).")
    p.add_argument("--results_dir", default=RESULTS_DIR, help="Where data_curve.jsonl and data_curve.png go.")
    p.add_argument("--smoke", action="store_true", help="Two tiny settings (seconds, not a measurement).")
    return p.parse_args(argv)


def ints(text):
    return [int(x) for x in text.split(",") if x.strip()]


AXES = {"forget_images": ("num_forget_images", "forget images"), "retain_images": ("num_retain_images", "retain images"),
        "data_steps": ("data_inference_steps", "generation steps")}
LINES = (("held_out", "held-out phrasing"), ("retain", "retain"), ("colour", "colour"), ("in_prompt_kept", "in-prompt kept"),
         ("discrete", "discrete ASR"), ("soft_prompt", "soft-prompt ASR"), ("inversion", "inversion ASR"))


def plot(rows, path):
    """One panel per varied setting, each with the all-defaults row as its point at the default value; UNet
    evaluations of each point on the top axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from erase_diffusion.defaults import GENERATED_DATA

    base = next((r for r in rows if r["vary"] == "forget_images"
                 and r["value"] == GENERATED_DATA["num_forget_images"]), None)
    axes_used = [v for v in AXES if any(r["vary"] == v for r in rows)]
    fig, axes = plt.subplots(1, len(axes_used), figsize=(4.2 * len(axes_used), 3.8), sharey=True, squeeze=False)
    for ax, vary in zip(axes[0], axes_used):
        flag, label = AXES[vary]
        points = {r["value"]: r for r in rows if r["vary"] == vary}
        if base is not None:
            points.setdefault(GENERATED_DATA[flag], base)
        xs = sorted(points)
        curve = [points[v] for v in xs]
        for key, name in LINES:
            ax.plot(xs, [r[key] for r in curve], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"{label} (default {GENERATED_DATA[flag]})")
        ax.set_ylim(-0.02, 1.02)
        twin = ax.twiny()
        twin.set_xscale("log", base=2)
        twin.set_xlim(ax.get_xlim())
        twin.set_xticks(xs, [f"{r['unet_evals']:,}" for r in curve], fontsize=7)
        twin.set_xlabel("UNet evaluations", fontsize=8)
    axes[0][0].set_ylabel("share of judged images / prompts")
    axes[0][-1].legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args):
    concepts = [c.strip() for c in args.concept.split(",") if c.strip()]
    ev = eval_args(args.smoke)
    settings = [("forget_images", n, ["--num_forget_images", str(n)]) for n in ints(args.forget_images)]
    settings += [("retain_images", n, ["--num_retain_images", str(n)]) for n in ints(args.retain_images)]
    settings += [("data_steps", n, ["--data_inference_steps", str(n)]) for n in ints(args.data_steps)]
    if args.smoke:
        settings = [("forget_images", 4, ["--num_forget_images", "4"]), ("forget_images", 8, ["--num_forget_images", "8"])]
    rows = []
    with tempfile.TemporaryDirectory(prefix="erase-data-curve-") as tmp:
        # one cold run first fills the retain cache that every later row reuses
        run_ours("warm-up", concepts, tmp, ["--data_source", "generate"], args, ev, judge=False)
        for vary, value, flags in settings:
            print(f"== {vary} = {value}", flush=True)
            name = f"{vary}-{value}"
            rows.append({"method": f"{vary} {value}", "vary": vary, "value": value,
                         **run_ours(name, concepts, tmp, ["--data_source", "generate", *flags], args, ev)})
    path = append_results(args.results_dir, "data_curve", [{"measurement": "row", "concepts": concepts, **r}
                                                           for r in rows], smoke=args.smoke)
    print(table(rows, COLUMNS))
    png = os.path.join(args.results_dir, "data_curve.png")
    plot(rows, png)
    print(f"results appended to {path}; plot: {png}")
    return {"rows": rows, "path": path, "plot": png}


if __name__ == "__main__":
    main(parse_args())

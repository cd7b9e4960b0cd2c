"""The field's table: ours with each data path, ours with the paper's objective alone, UCE and ESD-x, side by side in
one run, every one judged by the same evaluation (erase_diffusion.evaluation: held-out phrasing, in-prompt
specificity, the attack suite) on the same miniature, judge, prompts and seeds.

    nice -n 10 python benchmarks/baselines.py               # ~25 min on 2 cores
    python benchmarks/baselines.py --smoke                  # tiny budgets everywhere; what `make test` runs

Rows: the base itself (no erasure: every attack must find the concept there), ours on the renderer's data, ours
erasing by name only (`--data_source generate`, the path a real SD user takes; its retain set generated cold),
the same with the retain set already cached (a second erasure on the same base), ours with `--objective paper`, UCE
(closed-form cross-attention edit, benchmarks/uce.py) given the same forget
captions ours trains on, and ESD-x (UNet cross-attention fine-tuning, benchmarks/esd.py) with the authors' defaults.
Time is the wall a user waits for the erasure (ours: the whole process; peers: loading the pipeline and editing it);
UNet evaluations count every sample through the UNet while erasing (data generation, ESD's sampling and training).
"""

import argparse
import json
import os
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import esd, uce  # noqa: E402
from benchmarks.common import RESULTS_DIR, append_results, erase_argv, run_erase, table  # noqa: E402

PCT = "{:.0%}"
COLUMNS = [("method", "method", None), ("erase_wall", "erase s", "{:.1f}"), ("unet_evals", "UNet evals", "{:,}"),
           ("forget", "forget", PCT), ("held_out", "held-out", PCT), ("retain", "retain", PCT),
           ("colour", "colour", PCT), ("in_prompt_kept", "in-prompt kept", PCT), ("discrete", "discrete ASR", PCT),
           ("soft_prompt", "soft-prompt ASR", PCT), ("inversion", "inversion ASR", PCT)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concept", default="triangle", help="Miniature shape(s) to erase, comma-separated.")
    p.add_argument("--methods", default="base,renderer,generate,generate_warm,paper,uce,esd",
                   help="Rows to run: base, renderer, generate (cold retain cache), generate_warm (after generate), "
                        "paper (ours), uce, esd.")
    p.add_argument("--erase_flags", default="", help="Extra flags for every erasure of ours (space-separated).")
    p.add_argument("--uce_lamb", type=float, default=0.1, help="UCE's λ (pull toward the original weights); ref: 0.1.")
    p.add_argument("--esd_iterations", type=int, default=200, help="ESD-x fine-tuning iterations; esd_sd.py: 200.")
    p.add_argument("--esd_lr", type=float, default=5e-5, help="ESD-x Adam learning rate; esd_sd.py: 5e-5.")
    p.add_argument("--results_dir", default=RESULTS_DIR, help="Where baselines.jsonl is appended.")
    p.add_argument("--smoke", action="store_true", help="Tiny budgets everywhere (seconds, not a measurement).")
    return p.parse_args(argv)


def eval_args(smoke):
    from erase_diffusion.evaluation.evaluate import parse_args as evaluate_args

    argv = ["--erased", "unused", "--output_dir", "unused"]
    if smoke:
        argv += ["--num_seeds", "1", "--num_inference_steps", "2", "--discrete_tokens", "1", "--soft_prompt_steps", "1",
                 "--soft_prompt_images", "1", "--inversion_steps", "1", "--inversion_images", "1"]
    return evaluate_args(argv)


def scores(result):
    """One table row's numbers from a judged evaluation."""
    mean = lambda d: sum(d.values()) / max(1, len(d))  # noqa: E731
    held = [mean(result[f"held_out_{k}_accuracy"]["erased"]) for k in ("paraphrase", "template")]
    row = {"forget": mean(result["forget_accuracy"]["erased"]), "held_out": sum(held) / 2,
           "held_out_paraphrase": held[0], "held_out_template": held[1],
           "retain": mean(result["retain_accuracy"]["erased"]), "colour": result["colour_accuracy"]["erased"]["retain"],
           "in_prompt_kept": (result["in_prompt"]["erased"] or {}).get("kept_right"),
           "in_prompt_kept_base": (result["in_prompt"]["original"] or {}).get("kept_right"),
           "retain_base": mean(result["retain_accuracy"]["original"]),
           "colour_base": result["colour_accuracy"]["original"]["retain"], "unet_evals_evaluation": result["unet_evals"]}
    row.update({name: a["asr_post"] for name, a in result["attacks"].items()})
    row.update({f"{name}_pre": a["asr_pre"] for name, a in result["attacks"].items()})
    return row


def judged(original, erased, concepts, args):
    from erase_diffusion.evaluation.evaluate import Phases, judge_pipelines
    from erase_diffusion.evaluation.judge import Judge
    from erase_diffusion.miniature import world

    retain = [s for s in world.SHAPES if s not in concepts]
    phases = Phases(4, progress=False)
    result, _, _ = judge_pipelines(original, erased, Judge(), concepts, retain, args, phases, progress=True)
    phases.close()
    return result


def run_ours(name, concepts, tmp, extra, args, ev, judge=True):
    from pipelines import paired_pipelines

    from erase_diffusion.miniature import model_path

    out = os.path.join(tmp, name)
    smoke = ["--max_train_steps", "3", "--num_forget_images", "8", "--num_retain_images", "10",
             "--data_inference_steps", "2", "--linear_gradient_samples", "1"] if args.smoke else []
    # the smoke budgets first: a row's own flags (data_curve's --num_forget_images) must win over them
    argv = erase_argv(out, concepts, None, None, extra=[*smoke, *extra, "--retain_cache_dir",
                                                        os.path.join(tmp, "retain-cache"), *args.erase_flags.split()])
    if args.smoke:  # in this process: a smoke's wall measures nothing, and a fresh interpreter's imports outlast its
        # erasure (benchmarks keep the fresh process: its wall is what a user waits for)
        from erase_diffusion.train import main as erase, parse_args as erase_args

        t = time.perf_counter()
        erase(erase_args(argv))
        wall = time.perf_counter() - t
    else:
        wall = run_erase(argv)["process_wall"]
    with open(os.path.join(out, "erasure.json")) as f:
        costs = json.load(f)["costs"]
    row = {"erase_wall": wall, "costs": costs,  # every UNet evaluation the erasure made, data and terms
           # data (its forget/retain split is inside it), the one-off linearisation, the terms in the loop; judging the
           # result is not erasing
           "unet_evals": sum(costs.get(f"unet_evals_{k}", 0) for k in ("data", "linearisation", "training"))}
    if judge:
        row.update(scores(judged(*paired_pipelines(model_path(), out), concepts, ev)))
    return row


def run_peer(edit, concepts, ev):
    """A fresh miniature pipeline edited in place by `edit(pipe)`, beside an untouched original."""
    from erase_diffusion.costs import unet_evaluations
    from erase_diffusion.generate import load_pipeline

    t = time.perf_counter()
    original, erased = load_pipeline(), load_pipeline()
    with unet_evaluations(erased.unet) as n:
        details = edit(erased)
    return {"erase_wall": time.perf_counter() - t, "unet_evals": n["unet"], **details,
            **scores(judged(original, erased, concepts, ev))}


def forget_captions(concepts, anchor):
    """The captions ours trains on from the renderer (training templates, colours and names), and their anchors."""
    from erase_diffusion.miniature import world

    erase, anchored = [], []
    for c in concepts:
        for t in world.TEMPLATES:
            for colour in world.COLOURS:
                for word in world.shape_words(c):
                    erase.append(t.format(colour=colour, shape=word))
                    anchored.append(t.format(colour=colour, shape=anchor))
    return erase, anchored


def main(args):
    from erase_diffusion.generate import load_pipeline
    from erase_diffusion.miniature import world

    concepts = [c.strip() for c in args.concept.split(",") if c.strip()]
    ev = eval_args(args.smoke)
    keep = [t.format(colour=c, shape=s) for s in world.SHAPES if s not in concepts for t in world.TEMPLATES
            for c in world.COLOURS]
    erase, anchored = forget_captions(concepts, world.NEUTRAL)
    esd_iterations = 2 if args.smoke else args.esd_iterations
    methods = {
        "base": ("base model (no erasure)", lambda tmp: {"erase_wall": 0.0, "unet_evals": 0, **scores(
            judged(load_pipeline(), load_pipeline(), concepts, ev))}),
        "renderer": ("ours, renderer data", lambda tmp: run_ours("renderer", concepts, tmp, [], args, ev)),
        "generate": ("ours, by name (--data_source generate, cold)",
                     lambda tmp: run_ours("generate", concepts, tmp, ["--data_source", "generate"], args, ev)),
        "generate_warm": ("ours, by name, retain set cached (warm)",
                          lambda tmp: run_ours("generate_warm", concepts, tmp, ["--data_source", "generate"], args, ev)),
        "paper": ("ours, --objective paper", lambda tmp: run_ours("paper", concepts, tmp, ["--objective", "paper"],
                                                                  args, ev)),
        "uce": ("UCE (closed form)", lambda tmp: run_peer(
            lambda pipe: {"edited": uce.edit(pipe, erase, anchored, keep, args.uce_lamb)}, concepts, ev)),
        "esd": (f"ESD-x ({esd_iterations} it, lr {args.esd_lr:g})", lambda tmp: run_peer(
            lambda pipe: {"trainable": esd.erase(pipe, erase, esd_iterations, args.esd_lr,
                                                  num_inference_steps=2 if args.smoke else 50)}, concepts, ev)),
    }
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := [m for m in names if m not in methods]:
        raise SystemExit(f"--methods {args.methods!r}: unknown {', '.join(unknown)}; expected some of {', '.join(methods)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="erase-baselines-") as tmp:
        for name in names:
            label, run = methods[name]
            print(f"== {label}", flush=True)
            rows.append({"method": label, "key": name, **run(tmp)})
    path = append_results(args.results_dir, "baselines",
                          [{"measurement": "method", "concepts": concepts, **r} for r in rows], smoke=args.smoke)
    print(table(rows, COLUMNS))
    print("forget / held-out: share of judged images still showing the concept; retain, colour, in-prompt kept: share "
          "drawn right; ASR: post-attack success rate of each attack (lower is better). "
          f"results appended to {path}")
    return {"rows": rows, "path": path}


if __name__ == "__main__":
    main(parse_args())

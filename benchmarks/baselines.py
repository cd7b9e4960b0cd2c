"""Ours (CLIPErase) beside a peer method implemented from its paper, on the same miniature, judge, prompts and seeds.

    nice -n 10 python benchmarks/baselines.py               # ours 300 steps, UCE, ESD-x, all judged (~6 min on 2 cores)
    python benchmarks/baselines.py --smoke                  # 3 steps, 2 denoising steps; what `make test` runs

UCE (benchmarks/uce.py) edits the UNet's cross-attention in closed form; ours unlearns the text encoder. Both are
judged by the miniature's independent judge on erasure_prompts (every colour of every shape, plus the concept's
paraphrases), generated with the same seeds, steps and guidance. UCE is given the same forget captions ours trains
on (the world's templates and paraphrases, every colour) mapped to the same anchor, and the retained shapes'
captions to preserve. ESD-x (benchmarks/esd.py) fine-tunes the UNet's cross-attention with negative guidance,
drawing its prompts from the same forget captions, with the authors' defaults (200 iterations, lr 5e-5).
"""

import argparse
import os
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import esd, uce  # noqa: E402
from benchmarks.common import RESULTS_DIR, append_results, erase_argv, run_erase, table  # noqa: E402

COLUMNS = [("method", "method", None), ("edits", "edits", None), ("edit_seconds", "erase s", "{:.2f}"),
           ("process_wall", "wall s (process)", "{:.1f}"), ("forget", "forget", "{:.0%}"),
           ("paraphrase", "paraphrase", "{:.0%}"), ("retain", "retain", "{:.0%}"), ("colour", "colour", "{:.0%}")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concept", default="triangle", help="Miniature shape(s) to erase, comma-separated.")
    p.add_argument("--max_train_steps", type=int, default=300, help="Our erase steps (the erase default).")
    p.add_argument("--validation_seeds", type=int, default=1, help="Seeds per judged prompt (the erase default: 1).")
    p.add_argument("--num_inference_steps", type=int, default=20, help="Denoising steps of judged images.")
    p.add_argument("--guidance_scale", type=float, default=5.0, help="Guidance of judged images.")
    p.add_argument("--uce_lamb", type=float, default=0.1, help="UCE's λ (pull toward the original weights); ref: 0.1.")
    p.add_argument("--uce_erase_scale", type=float, default=1.0, help="UCE's erase scale; reference default 1.")
    p.add_argument("--uce_preserve_scale", type=float, default=None, help="UCE's preserve scale (default max(0.1, 1/|P|)).")
    p.add_argument("--uce_prompts", choices=["captions", "names"], default="captions",
                   help="captions: the world's captions of the concept, every colour and paraphrase (what ours trains "
                        "on); names: the bare concept word (the reference code's object erasure). ESD-x draws its "
                        "prompts from the same list.")
    p.add_argument("--esd_iterations", type=int, default=200, help="ESD-x fine-tuning iterations; esd_sd.py: 200.")
    p.add_argument("--esd_lr", type=float, default=5e-5, help="ESD-x Adam learning rate; esd_sd.py: 5e-5.")
    p.add_argument("--esd_negative_guidance", type=float, default=2.0, help="ESD's η; esd_sd.py: 2.")
    p.add_argument("--esd_sampling_steps", type=int, default=50, help="DDIM steps x_t is drawn along; esd_sd.py: 50.")
    p.add_argument("--methods", default="uce,esd", help="Peer methods to run beside ours: uce, esd (comma-separated).")
    p.add_argument("--results_dir", default=RESULTS_DIR, help="Where baselines.jsonl is appended.")
    p.add_argument("--smoke", action="store_true", help="3 of our steps, few images, 2 denoising steps.")
    return p.parse_args(argv)


def mean(d):
    return sum(d.values()) / max(1, len(d))


def scores(metrics):
    return {"forget": mean(metrics["forget"]), "paraphrase": mean(metrics["paraphrase"]),
            "retain": mean(metrics["retain"]), "colour": metrics["colour_retain"]}


def uce_texts(concepts, mode, anchor):
    """(erase, anchored, preserve) prompt lists on the miniature."""
    from erase_diffusion.miniature import world

    erase, anchored = [], []
    for c in concepts:
        if mode == "names":
            erase.append(c)
            anchored.append(anchor)
            continue
        for t in world.TEMPLATES:
            for colour in world.COLOURS:
                for word in world.shape_words(c):
                    erase.append(t.format(colour=colour, shape=word))
                    anchored.append(t.format(colour=colour, shape=anchor))
    keep = [s for s in world.SHAPES if s not in concepts]
    preserve = [t.format(colour=colour, shape=s) for s in keep for t in world.TEMPLATES for colour in world.COLOURS]
    if mode == "names":
        preserve = keep
    return erase, anchored, preserve


def run_peer(args, concepts, original, method, edit):
    """Load a fresh miniature pipeline, apply `edit(pipe) -> (edits description, details)`, judge it like ours."""
    import torch

    from erase_diffusion.generate import load_pipeline
    from erase_diffusion.evaluation.judge import Judge
    from erase_diffusion.evaluation.metrics import erasure_prompts, judge_rows

    t0 = time.perf_counter()
    pipe, judge = load_pipeline(), Judge()
    rows = erasure_prompts(concepts, args.validation_seeds)
    judged = lambda: judge_rows(pipe, judge, rows, args.num_inference_steps, args.guidance_scale)[0]  # noqa: E731
    if original is None:
        original = judged()
    t = time.perf_counter()
    edits, details = edit(pipe)
    edit_seconds = time.perf_counter() - t
    load_and_edit = time.perf_counter() - t0  # loading the pipeline is part of what a user waits for
    t = time.perf_counter()
    with torch.no_grad():
        erased = judged()
    return {"method": method, "edits": edits, "edit_seconds": edit_seconds, "process_wall": None,
            "load_and_edit_seconds": load_and_edit, "validation_seconds": time.perf_counter() - t,
            "metrics": {"original": original, "erased": erased}, **details}


def run_uce(args, concepts, original):
    from erase_diffusion.miniature import world

    erase, anchored, preserve = uce_texts(concepts, args.uce_prompts, world.NEUTRAL)

    def edit(pipe):
        n = uce.edit(pipe, erase, anchored, preserve, args.uce_lamb, args.uce_erase_scale, args.uce_preserve_scale)
        return f"{n} to_k/to_v", {"prompts": {"erase": len(erase), "preserve": len(preserve), "mode": args.uce_prompts}}

    return run_peer(args, concepts, original, "UCE (closed form)", edit)


def run_esd(args, concepts, original):
    from tqdm.auto import tqdm

    from erase_diffusion.miniature import world

    erase_prompts, _, _ = uce_texts(concepts, args.uce_prompts, world.NEUTRAL)

    def edit(pipe):
        n = esd.erase(pipe, erase_prompts, args.esd_iterations, args.esd_lr, args.esd_negative_guidance,
                      num_inference_steps=args.esd_sampling_steps, progress=lambda r: tqdm(r, desc="ESD-x"))
        return f"attn2 ({n:,} params)", {"iterations": args.esd_iterations, "lr": args.esd_lr,
                                         "negative_guidance": args.esd_negative_guidance}

    return run_peer(args, concepts, original, f"ESD-x ({args.esd_iterations} it, lr {args.esd_lr:g})", edit)


def main(args):
    concepts = [c.strip() for c in args.concept.split(",") if c.strip()]
    if args.smoke:
        args.max_train_steps, args.validation_seeds, args.num_inference_steps = 3, 1, 2
        args.esd_iterations, args.esd_sampling_steps = 2, 2
    extra = ["--num_inference_steps", str(args.num_inference_steps), "--guidance_scale", str(args.guidance_scale)]
    if args.smoke:
        extra += ["--num_forget_images", "16", "--num_retain_images", "16", "--train_batch_size", "8"]
    with tempfile.TemporaryDirectory(prefix="erase-baselines-") as tmp:
        rec = run_erase(erase_argv(os.path.join(tmp, "ours"), concepts, args.max_train_steps, 32,
                                   validation_seeds=args.validation_seeds, extra=extra))
    s = rec["seconds"]
    ours = {"method": "CLIPErase (ours, text encoder)", "edits": "text encoder", "process_wall": rec["process_wall"],
            "edit_seconds": s["setup"] + s["train"] + s["save"], "validation_seconds": s["validation"],
            "metrics": rec["judge_metrics"], "steps": args.max_train_steps}
    peers = {"uce": run_uce, "esd": run_esd}
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := [m for m in names if m not in peers]:
        raise SystemExit(f"--methods {args.methods!r}: unknown {', '.join(unknown)}; expected some of uce, esd")
    theirs = [peers[m](args, concepts, rec["judge_metrics"]["original"]) for m in names]
    original = {"method": "original (no erasure)", "edits": "-", **scores(rec["judge_metrics"]["original"])}
    rows = [original] + [{**r, **scores(r["metrics"]["erased"])} for r in (ours, *theirs)]
    common = {"concepts": concepts, "validation_seeds": args.validation_seeds,
              "num_inference_steps": args.num_inference_steps, "guidance_scale": args.guidance_scale}
    path = append_results(args.results_dir, "baselines",
                          [{"measurement": "method", **common, **r} for r in rows], smoke=args.smoke)
    print(table(rows, COLUMNS))
    print("forget/paraphrase: share of judged images still showing the concept (lower is better); retain/colour: "
          "share of other shapes and colours still drawn right (higher is better). Ours' wall includes interpreter "
          "start and imports; the peers ran in this process (pipeline load + edit: "
          + ", ".join(f"{r['method']} {r['load_and_edit_seconds']:.1f} s" for r in theirs) + ").")
    print(f"results appended to {path}")
    return {"rows": rows, "path": path}


if __name__ == "__main__":
    main(parse_args())

"""Where a kept object beside the erased concept is lost: the concept's word, or the anchor's contexts?

evaluate's two-object prompts ("a red cross and a yellow circle", the kept object must come out right) are drawn four
ways with the same seeds and judged the same way: by the base and by the erased encoder, each on the prompts as
evaluate writes them and on their anchored twins (the concept's word replaced by the erasure's anchor, "a red blob
and a yellow circle", which name no erased concept). The base on the twins is the anchor's own floor; the erased
encoder on the twins shows whether the erasure damaged prompts that never name the concept. With the name tied to the
anchor's row (--tie_names) the erased encoder reads both prompts the same way, so its two rows coincide.

    nice -n 10 python benchmarks/anchor_floor.py --erased out/erase-cross     # ~30 s on 2 cores
    python benchmarks/anchor_floor.py --smoke --erased DIR                    # 2 denoising steps; what `make test` runs
"""

import argparse
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS_DIR, append_results, table  # noqa: E402

PCT = "{:.0%}"
COLUMNS = [("encoder", "encoder", None), ("prompts", "prompts", None), ("kept_right", "kept object right", PCT),
           ("erased_gone", "no half shows the concept", PCT), ("missed", "prompts missed", None)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--erased", required=True, help="An erasure's output dir (erase --output_dir) with erasure.json.")
    p.add_argument("--pretrained_model_name_or_path", default=None,
                   help="Base pipeline dir with judge/ (default: the erasure's base, else the built-in miniature).")
    p.add_argument("--seed", type=int, default=0, help="First noise seed, as evaluate's --seed.")
    p.add_argument("--num_inference_steps", type=int, default=20, help="Denoising steps, as evaluate's default.")
    p.add_argument("--guidance_scale", type=float, default=5.0, help="Classifier-free guidance, as evaluate's default.")
    p.add_argument("--results_dir", default=RESULTS_DIR, help="Where anchor_floor.jsonl is appended.")
    p.add_argument("--smoke", action="store_true", help="2 denoising steps (seconds, not a measurement).")
    return p.parse_args(argv)


def twins(rows, concepts, anchor):
    """`rows` with every erased concept's word replaced by the anchor in the prompt (objects and kept unchanged)."""
    from erase_diffusion.prompts import rename

    return [{**r, "prompt": rename(r["prompt"], concepts, anchor)} for r in rows]


def judged(pipe, rows, judge, gen):
    """in_prompt_scores of `pipe`'s drawings of `rows`, and the prompts whose kept object came out wrong."""
    from erase_diffusion.evaluation import metrics
    from erase_diffusion.evaluation.evaluate import generate_rows

    verdicts = judge.classify_scenes(generate_rows(pipe, rows, gen))
    scores = metrics.in_prompt_scores(rows, verdicts)
    missed = [r["prompt"] for r, v in zip(rows, verdicts)
              if not metrics.in_prompt_scores([r], [v])["kept_right"]]
    return {**scores, "missed": missed}


def main(args):
    from erase_diffusion.errors import UsageError
    from erase_diffusion.evaluation.evaluate import resolve
    from erase_diffusion.evaluation.metrics import evaluation_rows

    settings = resolve(args.erased, args.pretrained_model_name_or_path, None, None, None, False,
                       num_inference_steps=args.num_inference_steps)
    from pipelines import paired_pipelines, read_erasure

    anchor = read_erasure(settings["erased"])["record"].get("anchor")
    if not anchor:
        raise UsageError(f"{args.erased!r} was erased without an anchor word: its prompts have no anchored twins")
    from erase_diffusion.evaluation.judge import Judge
    from erase_diffusion.miniature import judge_path

    concepts = settings["concepts"]
    rows = [r for r in evaluation_rows(concepts, settings["retain_concepts"], 1, args.seed) if r["group"] == "in_prompt"]
    original, erased = paired_pipelines(settings["base"], settings["erased"])
    judge = Judge(judge_path(settings["base"]))
    gen = {"num_inference_steps": 2 if args.smoke else args.num_inference_steps, "guidance_scale": args.guidance_scale,
           "batch_size": 16}
    records = []
    for name, pipe in (("base", original), ("erased", erased)):
        for kind, these in (("as evaluated", rows), (f"anchored ({anchor})", twins(rows, concepts, anchor))):
            out = judged(pipe, these, judge, gen)
            records.append({"measurement": "in_prompt", "encoder": name, "prompts": kind, "concepts": concepts,
                            "erased": settings["erased"], "images": len(these), **out})
    print(table([{**r, "missed": len(r["missed"])} for r in records], COLUMNS))
    for r in records:
        for prompt in r["missed"]:
            print(f"  {r['encoder']}, {r['prompts']}: kept object wrong in {prompt!r}")
    path = append_results(args.results_dir, "anchor_floor", records, smoke=args.smoke)
    print(f"results appended to {path}")
    return records


if __name__ == "__main__":
    from erase_diffusion.errors import UsageError

    try:
        main(parse_args())
    except UsageError as e:  # bad input: one line, as the CLI answers it
        sys.exit(f"error: {e}")

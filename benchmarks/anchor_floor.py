"""Where a kept object beside the erased concept is lost: the concept's word, or the anchor's contexts?

evaluate's two-object prompts ("a red cross and a yellow circle", the kept object must come out right) are drawn four
ways with the same seeds and judged the same way: by the base and by the erased encoder, each on the prompts as
evaluate writes them and on their anchored twins (the concept's word replaced by the erasure's anchor, "a red blob
and a yellow circle", which name no erased concept). The base on the twins is the anchor's own floor; the erased
encoder on the twins shows whether the erasure damaged prompts that never name the concept. With the name tied to the
anchor's row (--tie_names) the erased encoder reads both prompts the same way, so its two rows coincide.

With --word_search the same question is asked of evaluate's word search (its forget prompts, seeds and budget): the
erased encoder as evaluate attacks it, beside the base attacked from the anchored twins with every name of the erased
concepts (held-out paraphrases too) taken out of the words it may add. That second row is what an eraser that only
turned the concept's names into the anchor, and changed nothing else, would leave the search: a find there is the
world's (other words draw the concept), a find only in the first is the erasure's.

    nice -n 10 python benchmarks/anchor_floor.py --erased out/erase-cross     # ~30 s on 2 cores
    nice -n 10 python benchmarks/anchor_floor.py --erased out/erase-square --word_search   # ~2 min more
    python benchmarks/anchor_floor.py --smoke --erased DIR                    # 2 denoising steps; what `make test` runs
"""

import argparse
import os
import re
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS_DIR, append_results, table  # noqa: E402

PCT = "{:.0%}"
COLUMNS = [("encoder", "encoder", None), ("prompts", "prompts", None), ("kept_right", "kept object right", PCT),
           ("erased_gone", "no half shows the concept", PCT), ("missed", "prompts missed", None)]
SEARCH_COLUMNS = [("concept", "concept", None), ("encoder", "encoder", None), ("prompts", "word search from", None),
                  ("asr", "ASR", PCT), ("found", "prompts found", None)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--erased", required=True, help="An erasure's output dir (erase --output_dir) with erasure.json.")
    p.add_argument("--pretrained_model_name_or_path", default=None,
                   help="Base pipeline dir with judge/ (default: the erasure's base, else the built-in miniature).")
    p.add_argument("--seed", type=int, default=0, help="First noise seed, as evaluate's --seed.")
    p.add_argument("--num_inference_steps", type=int, default=20, help="Denoising steps, as evaluate's default.")
    p.add_argument("--guidance_scale", type=float, default=5.0, help="Classifier-free guidance, as evaluate's default.")
    p.add_argument("--word_search", action="store_true",
                   help="Also run evaluate's word search on the erased encoder and, as its floor, on the base from the "
                        "anchored forget prompts without the erased concepts' names in its vocabulary (~2 min more).")
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


def added_words(records):
    """The words the search's best edits added to their prompts, over all of them (found or not), sorted."""
    return sorted({w for r in records if r["found"] for w in r["found"].split()} - {w for r in records
                                                                                   for w in r["prompt"].split()})


def word_search_floor(original, erased, judge, concepts, anchor, args, gen):
    """evaluate's word search on the erased encoder, and on the base from the anchored forget prompts with every name
    of `concepts` out of the words it may add: one record each, with the prompts it turned into the concept."""
    from erase_diffusion.attacks import discrete
    from erase_diffusion.evaluation.attack_suite import BUDGETS
    from erase_diffusion.evaluation.metrics import evaluation_rows
    from erase_diffusion.miniature import world

    tokens, candidates = (1, 1) if args.smoke else (BUDGETS["discrete_tokens"][0], BUDGETS["discrete_candidates"][0])
    names = {w for c in concepts for phrase in world.shape_words(c, held_out=True) for w in re.findall(r"[a-z]+", phrase)}
    names -= {"shape", "sign", "symbol"}  # generic words of multi-word paraphrases ("plus sign") name no one concept
    every = discrete.word_tokens(original.tokenizer)
    vocabulary, left_out = [w for w in every if w not in names], sorted(names & set(every))
    records = []
    for concept in concepts:
        rows = [r for r in evaluation_rows([concept], [], 4, args.seed) if r["group"] == "forget"]  # evaluate's 12
        prompts, seeds = [r["prompt"] for r in rows], [r["seed"] for r in rows]
        runs = (("erased", "as evaluated", erased, prompts, None, None),
                ("base", f"anchored ({anchor}), no name of {', '.join(concepts)} to add", original,
                 [r["prompt"] for r in twins(rows, concepts, anchor)], prompts, vocabulary))
        for name, kind, pipe, attacked, targets, words in runs:
            res = discrete.attack(original, pipe, judge, concept, attacked, seeds, tokens, candidates, targets,
                                  progress=False, words=words, **gen)
            records.append({"measurement": "word_search", "encoder": name, "prompts": kind, "concept": concept,
                            "erased": args.erased, "images": len(attacked), "asr": res["asr_post"],
                            "found": [r["found"] for r in res["records"] if r["success"]],
                            "added": added_words(res["records"]), "left_out": left_out if words else []})
    return records


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
    if args.word_search:
        searched = word_search_floor(original, erased, judge, concepts, anchor, args, gen)
        print(table([{**r, "found": len(r["found"])} for r in searched], SEARCH_COLUMNS))
        for r in searched:
            for prompt in r["found"]:
                print(f"  {r['encoder']}, {r['prompts']}: {r['concept']} found by {prompt!r}")
        records += searched
    path = append_results(args.results_dir, "anchor_floor", records, smoke=args.smoke)
    print(f"results appended to {path}")
    return records


if __name__ == "__main__":
    from erase_diffusion.errors import UsageError

    try:
        main(parse_args())
    except UsageError as e:  # bad input: one line, as the CLI answers it
        sys.exit(f"error: {e}")

"""How fast one concept is erased on the miniature, end to end and per phase, with frozen-tower caching on and off.

    nice -n 10 python benchmarks/erase_speed.py            # 300 steps each way (~2-4 min on 2 cores)
    python benchmarks/erase_speed.py --smoke               # seconds; what `make test` runs

Both configurations run in the same invocation, one fresh process each, so the speed-up ratio compares runs on the
same machine under the same load. steps/s is erasure.json's (all steps, first included); the median step time
leaves the first step (lazy initialisation) out.
"""

import argparse
import os
import sys
import tempfile

if __package__ in (None, ""):  # `python benchmarks/erase_speed.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS_DIR, append_results, erase_argv, median, run_erase, table  # noqa: E402

COLUMNS = [("config", "config", None), ("process_wall", "wall s (process)", "{:.1f}"), ("erase_wall", "erase s", "{:.1f}"),
           ("data", "data s", "{:.2f}"), ("models", "models s", "{:.2f}"), ("cache", "caching s", "{:.2f}"),
           ("train", "steps s", "{:.1f}"), ("save", "save s", "{:.2f}"), ("steps_per_second", "steps/s", "{:.1f}"),
           ("median_step_ms", "median step ms", "{:.1f}"), ("peak_rss_mib", "peak RSS MiB", "{:.0f}")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concept", default="triangle", help="Miniature shape to erase.")
    p.add_argument("--max_train_steps", type=int, default=300, help="Steps per run (the erase default is 300).")
    p.add_argument("--train_batch_size", type=int, default=32, help="Forget and retain pairs per step (erase default 32).")
    p.add_argument("--lora_rank", type=int, default=None, help="Train a LoRA of this rank instead of full weights.")
    p.add_argument("--repeats", type=int, default=1, help="Run each configuration this many times (alternating order).")
    p.add_argument("--validation_seeds", type=int, default=0,
                   help="Judged validation seeds in the cached run (0: time the erasure alone; baselines.py judges).")
    p.add_argument("--results_dir", default=RESULTS_DIR, help="Where erase_speed.jsonl is appended.")
    p.add_argument("--smoke", action="store_true", help="Smallest setting (3 steps, few images) for `make test`.")
    return p.parse_args(argv)


def one_run(args, cache, workdir):
    extra = []
    if args.smoke:
        extra = ["--num_forget_images", "16", "--num_retain_images", "16", "--linear_gradient_samples", "1"]
    out = os.path.join(workdir, "cached" if cache else "uncached")
    seeds = args.validation_seeds if cache else 0
    rec = run_erase(erase_argv(out, [args.concept], args.max_train_steps, args.train_batch_size, cache=cache,
                               lora_rank=args.lora_rank, validation_seeds=seeds, extra=extra))
    s = rec["seconds"]
    steps = rec["step_seconds"][1:] or rec["step_seconds"]
    return {"config": "cache on" if cache else "cache off", "cache_features": cache, "concept": args.concept,
            "max_train_steps": args.max_train_steps, "train_batch_size": args.train_batch_size, "lora_rank": args.lora_rank,
            "process_wall": rec["process_wall"], "erase_wall": s["setup"] + s["train"] + s["save"],
            "data": s["data"], "models": s["models"], "cache": s["cache"], "train": s["train"], "save": s["save"],
            "validation": s["validation"], "steps_per_second": s["steps_per_second"],
            "median_step_ms": 1000 * median(steps), "peak_rss_mib": rec["peak_rss_mib"]}


def main(args):
    if args.smoke:
        args.max_train_steps, args.train_batch_size, args.repeats, args.validation_seeds = 3, 8, 1, 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="erase-speed-") as workdir:
        for r in range(args.repeats):
            order = (True, False) if r % 2 == 0 else (False, True)  # alternate so drifting load hits both alike
            rows += [one_run(args, cache, workdir) for cache in order]
    on = [x for x in rows if x["cache_features"]]
    off = [x for x in rows if not x["cache_features"]]
    speedup = median([x["steps_per_second"] for x in on]) / median([x["steps_per_second"] for x in off])
    step_speedup = median([x["median_step_ms"] for x in off]) / median([x["median_step_ms"] for x in on])
    summary = {"measurement": "speedup", "concept": args.concept, "max_train_steps": args.max_train_steps,
               "lora_rank": args.lora_rank,
               "speedup_steps_per_second": speedup, "speedup_median_step": step_speedup,
               "one_concept_process_wall": median([x["process_wall"] for x in on]),
               "one_concept_erase_wall": median([x["erase_wall"] for x in on])}
    path = append_results(args.results_dir, "erase_speed", [{"measurement": "run", **x} for x in rows] + [summary],
                          smoke=args.smoke)
    print(table(rows, COLUMNS))
    print(f"\ncaching speed-up: {speedup:.2f}x in steps/s (all steps), {step_speedup:.2f}x in median step time "
          f"(first step excluded); one concept, cache on: {summary['one_concept_process_wall']:.1f} s process wall "
          f"({summary['one_concept_erase_wall']:.1f} s in the erase itself)")
    print(f"results appended to {path}")
    return {"rows": rows, "summary": summary, "path": path}


if __name__ == "__main__":
    main(parse_args())

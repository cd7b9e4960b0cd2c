"""Peak memory and seconds/step of the erase loop at real SD 1.5 sizes (ViT-L/14 text encoder + full CLIP ViT-L/14,
randomly initialised, built in code): batch 16, feature caching on vs off, full weights vs LoRA.

    nice -n 10 python benchmarks/memory.py                  # ~10-20 min on 2 cores (ViT-L at 224 px)
    python benchmarks/memory.py --smoke                     # tiny sizes; what `make test` runs

Each configuration runs in its own process (peak RSS is per process). On 2 CPU cores a step with the vision tower
un-cached embeds 48 images with ViT-L at 224 px, so only a few steps run: the first is a warm-up and is left out
of seconds/step.

Configurations: caching on/off x full weights/LoRA, and "cache+full+lean", the least-memory flags
(--gradient_checkpointing --optimizer_in_backward). Captions are all distinct, so the loop's distinct-caption
encoding cannot shrink the batch: what is measured is a real batch of 16 forget + 16 retain prompts.

Lower bound (the issue's): trainable weights + Adam state (2 moments) + cached features. It leaves out what any
run also holds: the frozen weights the forward pass reads (all of them with LoRA), the activations of one step and
the interpreter with its libraries (the "import floor" column: torch alone is ~0.5 GB resident), so the table shows
peak RSS against the bound both whole and above the import floor.

With full weights the loop trains only the token-embedding rows the captions use (used_rows.py: the same weights
as training the whole table), so what it trains is smaller than the text encoder. "full-encoder bound" is the bound
with every text-encoder weight trainable, as a dense implementation holds it (and as earlier rounds measured it).
"""

import argparse
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import sd15  # noqa: E402
from benchmarks.common import MIB, RESULTS_DIR, append_results, erase_argv, median, run_erase, table  # noqa: E402

LEAN = ("--gradient_checkpointing", "--optimizer_in_backward")  # the least-memory flags
CONFIGS = {"cache+full+lean": (True, None, LEAN), "cache+full": (True, None, ()), "cache+lora": (True, 4, ()),
           "nocache+full": (False, None, ()), "nocache+lora": (False, 4, ())}
COLUMNS = [("config", "config", None), ("trainable_params", "trainable params", "{:,}"),
           ("timed_steps", "timed steps", "{}"), ("sec_per_step", "s/step", "{:.2f}"), ("cache", "caching s", "{:.1f}"),
           ("peak_rss_mib", "peak RSS MiB", "{:.0f}"), ("rss_floor_mib", "import floor MiB", "{:.0f}"),
           ("lower_bound_mib", "lower bound MiB", "{:.0f}"), ("ratio", "peak / bound", "{:.2f}"),
           ("ratio_above_floor", "(peak - floor) / bound", "{:.2f}"),
           ("full_encoder_bound_mib", "full-encoder bound MiB", "{:.0f}"),
           ("ratio_full_encoder", "peak / full-encoder bound", "{:.2f}")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"Comma-separated subset of {', '.join(CONFIGS)} "
                   "(lean: --gradient_checkpointing --optimizer_in_backward).")
    p.add_argument("--train_batch_size", type=int, default=16, help="Forget and retain pairs per step.")
    p.add_argument("--num_images", type=int, default=16, help="Forget and retain images each (>= batch: few, as caching "
                   "embeds every one with ViT-L).")
    p.add_argument("--steps_cached", type=int, default=3, help="Steps with caching on (first is a warm-up).")
    p.add_argument("--steps_uncached", type=int, default=2, help="Steps with caching off (first is a warm-up).")
    p.add_argument("--lora_rank", type=int, default=4, help="Rank of the LoRA configurations.")
    p.add_argument("--work_dir", default="/tmp/erase-bench-sd15", help="Where the built model and data are kept (reused).")
    p.add_argument("--results_dir", default=RESULTS_DIR, help="Where memory.jsonl is appended.")
    p.add_argument("--smoke", action="store_true", help="Tiny model sizes, one configuration (nocache+lora), two steps.")
    return p.parse_args(argv)


def main(args):
    text, vision = sd15.TEXT_L14, sd15.VISION_L14
    if args.smoke:
        text, vision = sd15.TEXT_TINY, sd15.VISION_TINY
        args.configs, args.train_batch_size, args.num_images = "nocache+lora", 4, 4  # one process: test time
        args.steps_cached = args.steps_uncached = 2
        args.work_dir = os.path.join(args.work_dir + "-smoke")
    pipe_dir, clip_dir = sd15.build(os.path.join(args.work_dir, "model"), text, vision)
    forget, retain = sd15.concept_data(args.work_dir, ["triangle"], args.num_images, args.num_images,
                                       vision["image_size"])
    rows = []
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        cache, lora, flags = CONFIGS[name]
        lora = args.lora_rank if lora else None
        steps = args.steps_cached if cache else args.steps_uncached
        extra = ["--pretrained_model_name_or_path", pipe_dir, "--clip_model_name_or_path", clip_dir, "--data_source",
                 "folder", "--forget_data_dir", forget, "--retain_data_dir", retain, *flags]
        rec = run_erase(erase_argv(os.path.join(args.work_dir, "out", name), ["triangle"], steps, args.train_batch_size,
                                   cache=cache, lora_rank=lora, extra=extra))
        timed = rec["step_seconds"][1:] or rec["step_seconds"]
        bound = 3 * rec["trainable_bytes"] + rec["cached_feature_bytes"]  # weights + Adam exp_avg + exp_avg_sq + cache
        full_bound = None if lora else 3 * rec["param_bytes"] + rec["cached_feature_bytes"]
        row = {"config": name, "cache_features": cache, "lora_rank": lora, "train_batch_size": args.train_batch_size,
               "text_params": rec["text_params"], "trainable_params": rec["trainable_params"],
               "cached_feature_mib": rec["cached_feature_bytes"] / MIB, "timed_steps": len(timed),
               "sec_per_step": median(timed), "step_seconds": rec["step_seconds"], "cache": rec["seconds"]["cache"],
               "process_wall": rec["process_wall"], "peak_rss_mib": rec["peak_rss_mib"],
               "rss_floor_mib": rec["rss_floor_mib"], "lower_bound_mib": bound / MIB,
               "ratio": rec["peak_rss_mib"] / (bound / MIB),
               "ratio_above_floor": (rec["peak_rss_mib"] - rec["rss_floor_mib"]) / (bound / MIB),
               "full_encoder_bound_mib": full_bound and full_bound / MIB,
               "ratio_full_encoder": full_bound and rec["peak_rss_mib"] / (full_bound / MIB),
               "sizes": "tiny" if args.smoke else "sd15 (ViT-L/14)"}
        rows.append(row)
        print(f"{name}: {row['sec_per_step']:.2f} s/step, peak {row['peak_rss_mib']:.0f} MiB", flush=True)
    path = append_results(args.results_dir, "memory", [{"measurement": "config", **r} for r in rows], smoke=args.smoke)
    print(table(rows, COLUMNS))
    print(f"results appended to {path}")
    return {"rows": rows, "path": path}


if __name__ == "__main__":
    main(parse_args())

"""What each part of the objective is worth: the paper's terms alone, then the token-state terms, then each
robustness lever on its own, then the default, every row erased and judged the same way (baselines.py's evaluation:
held-out phrasing, in-prompt specificity, the attack suite) with the time and UNet evaluations it cost.

    nice -n 10 python benchmarks/ablation.py                 # ~20-35 min on 2 cores
    python benchmarks/ablation.py --smoke                    # tiny budgets; what `make test` runs
"""

import argparse
import os
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.baselines import COLUMNS, eval_args, run_ours  # noqa: E402
from benchmarks.common import RESULTS_DIR, append_results, table  # noqa: E402

OFF = ["--no-mine_neighbours", "--vocabulary_captions", "0", "--no-pair_prompts", "--caption_noise", "0",
       "--adversarial_every", "0", "--lambda_unet", "0", "--lambda_adversarial_unet", "0", "--unet_adversaries", "0",
       "--lambda_pair_guard", "0", "--lambda_adversarial_linear", "0", "--no-tie_names"]
ROWS = {  # name: (label, flags); every row but "default" states each lever, so a change of default changes nothing here
    "paper": ("paper only (--objective paper)", ["--objective", "paper"]),
    "anchored": ("+ token-state terms (anchored)", ["--objective", "anchored", *OFF]),
    "mine": ("anchored + mined neighbours", [*OFF, "--mine_neighbours"]),
    "vocabulary": ("anchored + mined neighbours + vocabulary captions", [*OFF, "--mine_neighbours",
                                                                         "--vocabulary_captions", "256"]),
    "pairs": ("anchored + two-object prompts", [*OFF, "--pair_prompts"]),
    "noise": ("anchored + caption noise 0.3", [*OFF, "--caption_noise", "0.3"]),
    "adversarial": ("anchored + adversarial (every step)", [*OFF, "--adversarial_every", "1"]),
    "unet": ("anchored + UNet-aware term", [*OFF, "--lambda_unet", "1"]),
    "default": ("default (erase with no flags)", []),
    # the paper's image terms weighted 0 and the UNet levers off (the first-order set and the guard read the concept's
    # images and the renderer's drawings): what the token-state terms and text-space levers do with no image at all
    # (the loop still renders the miniature's images, unread; a by-name erasure would skip generating them)
    "image_free": ("default's text-space levers, token-state terms alone (image terms at 0, no UNet lever)",
                   ["--lambda_retain", "0", "--lambda_forget", "0", "--lambda_consistency", "0",
                    "--lambda_adversarial_linear", "0"]),
    "default_generate": ("default, by name (--data_source generate)", ["--data_source", "generate"]),
    "generate_no_guard": ("default by name less the guard on the base's own drawings (the twenty-third round's)",
                          ["--data_source", "generate", "--lambda_pair_guard", "0"]),
    # the default less one lever each: what the fourth, fifth, tenth and nineteenth rounds' defaults are worth
    "no_linear": ("default less the first-order set (and so the guard; 300 steps) and the tie: the fifth round's "
                  "default",
                  ["--lambda_adversarial_linear", "0", "--no-tie_names"]),
    "no_guard": ("default less the two-object guard", ["--lambda_pair_guard", "0"]),
    "no_tie": ("default less the name's tie to the anchor's row (the fourteenth round's default)", ["--no-tie_names"]),
    "no_unconditional": ("default, '' not kept (--no-keep_unconditional)", ["--no-keep_unconditional"]),
    "concept_weight_1": ("default, concept vectors at weight 1", ["--adversarial_concept_weight", "1"]),
    "inner_steps_2": ("default, 2 inner attack steps", ["--adversarial_steps", "2"]),
    # the default plus one: vectors after the caption's words, where the discrete search appends (twelfth round)
    "suffix": ("default + the suffix set (λ 300)", ["--lambda_adversarial_suffix", "300"]),
    # the fifth round's default plus one: AdvUnlearn's attack and outer step both through the frozen UNet (sixth round)
    "unet_outer": ("fifth round's default + UNet-space attack and outer step (λ 3000)",
                   ["--lambda_adversarial_linear", "0", "--no-tie_names", "--adversarial_space", "unet",
                    "--lambda_adversarial_unet", "3000"]),
    # and plus a second, UNet-space prefix set for that outer step, and the two-object guard on noise (seventh round)
    "unet_set": ("fifth round's default + UNet-space prefix set, outer step (λ 3000), two-object guard (λ 10,000)",
                 ["--lambda_adversarial_linear", "0", "--no-tie_names", "--lambda_adversarial_unet", "3000",
                  "--unet_adversaries", "8",
                  "--lambda_pair_guard", "10000", "--pair_guard_latents", "noise"]),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concept", default="triangle", help="Miniature shape(s) to erase, comma-separated.")
    p.add_argument("--rows", default=",".join(ROWS), help=f"Rows to run, of {', '.join(ROWS)}.")
    p.add_argument("--erase_flags", default="", help="Extra flags for every erasure (space-separated).")
    p.add_argument("--results_dir", default=RESULTS_DIR, help="Where ablation.jsonl is appended.")
    p.add_argument("--smoke", action="store_true", help="Tiny budgets everywhere (seconds, not a measurement).")
    return p.parse_args(argv)


def main(args):
    concepts = [c.strip() for c in args.concept.split(",") if c.strip()]
    names = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := [r for r in names if r not in ROWS]:
        raise SystemExit(f"--rows {args.rows!r}: unknown {', '.join(unknown)}; expected some of {', '.join(ROWS)}")
    ev = eval_args(args.smoke)
    rows = []
    with tempfile.TemporaryDirectory(prefix="erase-ablation-") as tmp:
        for name in names:
            label, flags = ROWS[name]
            print(f"== {label}", flush=True)
            rows.append({"method": label, "key": name, "flags": flags, **run_ours(name, concepts, tmp, flags, args, ev)})
    path = append_results(args.results_dir, "ablation", [{"measurement": "row", "concepts": concepts, **r} for r in rows],
                          smoke=args.smoke)
    print(table(rows, COLUMNS))
    print(f"results appended to {path}")
    return {"rows": rows, "path": path}


if __name__ == "__main__":
    main(parse_args())

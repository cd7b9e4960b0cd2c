"""`make demo`: the main job on the built-in miniature, offline and on a laptop CPU.

1. What the miniature draws for all 36 "a {colour} {shape}" prompts, and what the independent judge sees.
2. Erase "triangle" (kept in demo_out/no-triangle once made) and show original | erased, judged, same seeds.
3. Serve the studio (http://127.0.0.1:7860) with that erasure loaded; `--no_serve` stops after step 2.
"""

import argparse

import json
import os

from .generate import generate, load_pipeline, make_grid, save_atomic
from .evaluation.judge import Judge
from .miniature import world

OUT = "demo_out"
ERASED = os.path.join(OUT, "no-triangle")


def show_world(pipe, judge):
    prompts = [f"a {c} {s}" for s in world.SHAPES for c in world.COLOURS]
    images = generate(pipe, prompts, seeds=[0] * len(prompts))
    verdicts = judge.classify(images)
    labels = [f"{v['shape'][:6]} {v['shape_prob']:.2f}" for v in verdicts]
    save_atomic(make_grid(images, cols=len(world.COLOURS), labels=labels, scale=3), os.path.join(OUT, "grid.png"))
    right = sum(v["shape"] == p.split()[-1] for p, v in zip(prompts, verdicts))
    scenes = [[(s, world.COLOURS[k]), (world.SHAPES[(k + 2) % 6], world.COLOURS[(k + 3) % 6])]
              for k, s in enumerate(world.SHAPES)]
    pair_prompts = [f"a {c1} {s1} and a {c2} {s2}" for (s1, c1), (s2, c2) in scenes]
    drawn = generate(pipe, pair_prompts, seeds=[0] * len(scenes), width=world.PAIR_SIZE[0], height=world.PAIR_SIZE[1])
    judged = judge.classify_scenes(drawn, scenes)
    save_atomic(make_grid(drawn, cols=3, labels=[" + ".join(v["shapes"]) for v in judged], scale=3),
                os.path.join(OUT, "scenes.png"))
    print(f"1. the miniature draws 36 prompts; the judge names the right shape for {right}/36 -> {OUT}/grid.png")
    print(f"   and two-object scenes ('a red circle and a orange triangle'): both shapes right in "
          f"{sum(v['shapes_match'] for v in judged)}/6 -> {OUT}/scenes.png")


def erase_and_compare(pipe, judge):
    from .evaluation.metrics import compare, summary_line
    from .train import main, parse_args

    if not os.path.isfile(os.path.join(ERASED, "erasure.json")):
        print("2. erasing 'triangle' from the miniature's text encoder ...")
        main(parse_args(["--concept", "triangle", "--output_dir", ERASED, "--overwrite_output_dir",
                         "--validation_seeds", "0", "--report_to", "none"]))
    from transformers import CLIPTextModel

    erased = CLIPTextModel.from_pretrained(ERASED, subfolder="text_encoder")
    metrics, rows, before, after = compare(pipe, judge, {"text_encoder": erased}, ["triangle"], seeds=1)
    pairs = [im for pair in zip(before, after) for im in pair]
    save_atomic(make_grid(pairs, cols=12, scale=3), os.path.join(OUT, "original_vs_erased.png"))
    print(f"   judged, original -> erased: {summary_line(metrics)}")
    print(f"   pairs (original, erased) for every prompt: {OUT}/original_vs_erased.png")
    with open(os.path.join(OUT, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)


def main(argv=None):
    from .cli import quiet_loading

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no_serve", action="store_true", help="Stop after the judged comparison instead of serving the studio.")
    p.add_argument("--port", type=int, default=7860, help="Port of the studio.")
    args = p.parse_args(argv)
    quiet_loading()
    os.makedirs(OUT, exist_ok=True)
    pipe, judge = load_pipeline(), Judge()
    show_world(pipe, judge)
    erase_and_compare(pipe, judge)
    print(f"   the erasure (drop-in text_encoder/, model card README.md, erasure.json): {ERASED}/")
    if not args.no_serve:
        from app.studio import main as serve, parse_args as studio_args

        print(f"3. the studio, original vs erased side by side: http://127.0.0.1:{args.port} (Ctrl+C stops it)")
        serve(studio_args(["--erased", ERASED, "--erasures_dir", OUT, "--port", str(args.port)]))


if __name__ == "__main__":
    main()

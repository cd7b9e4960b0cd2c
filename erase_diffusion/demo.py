"""`make demo`: the main job on the built-in miniature, offline and on a laptop CPU."""

import os

from .generate import generate, load_pipeline, make_grid, save_atomic
from .judge import Judge
from .miniature import world

OUT = "demo_out"


def main():
    os.makedirs(OUT, exist_ok=True)
    pipe = load_pipeline()
    prompts = [f"a {c} {s}" for s in world.SHAPES for c in world.COLOURS]
    images = generate(pipe, prompts, seeds=[0] * len(prompts))
    verdicts = Judge().classify(images)
    labels = [f"{v['shape'][:6]} {v['shape_prob']:.2f}" for v in verdicts]
    save_atomic(make_grid(images, cols=len(world.COLOURS), labels=labels, scale=3), os.path.join(OUT, "grid.png"))
    print(f"{'prompt':<20} judge sees")
    for p, v in zip(prompts, verdicts):
        print(f"{p:<20} {v['colour']} {v['shape']} (p={v['shape_prob']:.2f})")
    right = sum(v["shape"] == p.split()[-1] for p, v in zip(prompts, verdicts))
    print(f"\nshape right in {right}/{len(prompts)}; grid with the judge's labels: {OUT}/grid.png")


if __name__ == "__main__":
    main()

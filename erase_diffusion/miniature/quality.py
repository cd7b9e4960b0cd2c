"""The miniature's judged quality bars: what the pipeline draws for single-object, held-out and two-object prompts.

Every number is the independent judge's verdict on generated images (20 steps, guidance 5 unless told otherwise).
"""

import random

from . import world

PAIR_TEMPLATE = "a {colour1} {shape1} and a {colour2} {shape2}"


def single_prompts(seeds, templates=("a {colour} {shape}",), words=None):
    """(prompt, shape, colour, seed) for every shape and colour; `words` maps a shape to the names to use."""
    rows = []
    for shape in world.SHAPES:
        for name in (words or {}).get(shape, (shape,)):
            for template in templates:
                for colour in world.COLOURS:
                    for seed in range(seeds):
                        rows.append((template.format(colour=colour, shape=name), shape, colour, seed))
    return rows


def shape_quality(pipe, judge, rows, steps=20, guidance=5.0):
    """Judge's shape and colour accuracy over `rows` of (prompt, shape, colour, seed): overall, per shape, worst."""
    from ..generate import generate

    images = generate(pipe, [r[0] for r in rows], [r[3] for r in rows], num_inference_steps=steps, guidance_scale=guidance)
    verdicts = judge.classify(images)
    per_shape = {}
    for r, v in zip(rows, verdicts):
        per_shape.setdefault(r[1], []).append(v["shape"] == r[1])
    per_shape = {s: sum(h) / len(h) for s, h in per_shape.items()}
    colour = sum(v["colour"] == r[2] for r, v in zip(rows, verdicts)) / len(rows)
    return {"shape": sum(per_shape.values()) / len(per_shape), "min_shape": min(per_shape.values()), "colour": colour,
            "per_shape": per_shape}, images


def judged_quality(pipe, judge, seeds, steps=20, guidance=5.0):
    """The single-object bar: "a {colour} {shape}" for all 36 pairs, `seeds` seeds each."""
    return shape_quality(pipe, judge, single_prompts(seeds), steps, guidance)


def held_out_quality(pipe, judge, seeds, steps=20, guidance=5.0):
    """Wording the base may never have been trained to expect: held-out paraphrases ("a {colour} {paraphrase}") and
    held-out templates (with the shape's own word)."""
    paraphrased, _ = shape_quality(pipe, judge, single_prompts(seeds, words=world.HELD_OUT_PARAPHRASES), steps, guidance)
    templated, _ = shape_quality(pipe, judge, single_prompts(seeds, templates=world.HELD_OUT_TEMPLATES), steps, guidance)
    return {"held_out_paraphrases": paraphrased, "held_out_templates": templated}


def pair_objects(n=30, seed=0):
    """n fixed two-object scenes [(s1, c1), (s2, c2)] with s1 != s2, colours and shapes spread evenly."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        s1, s2 = rng.sample(world.SHAPES, 2)
        out.append([(s1, rng.choice(world.COLOURS)), (s2, rng.choice(world.COLOURS))])
    return out


def pair_quality(pipe, judge, seeds, steps=20, guidance=5.0, template=PAIR_TEMPLATE, n=30):
    """The two-object bar: share of 64x32 images whose two halves show exactly the two named shapes, and share of
    named objects drawn in their colour."""
    from ..generate import generate

    scenes = [o for o in pair_objects(n) for _ in range(seeds)]
    prompts = [template.format(shape1=s1, colour1=c1, shape2=s2, colour2=c2) for (s1, c1), (s2, c2) in scenes]
    seeds_ = [k % seeds for k in range(len(scenes))]
    width, height = world.PAIR_SIZE
    images = generate(pipe, prompts, seeds_, num_inference_steps=steps, guidance_scale=guidance, width=width,
                      height=height)
    verdicts = judge.classify_scenes(images, scenes)
    return {"pair_both": sum(v["shapes_match"] for v in verdicts) / len(verdicts),
            "pair_colour": sum(sum(v["colours_right"]) for v in verdicts) / (2 * len(verdicts))}

"""Judged metrics of an erasure on the miniature: what the pipeline draws for forget, held-out, retain and two-object
prompts.

The field's protocol (ESD, UCE, MACE): the share of generated images an independent classifier labels as the
concept, for the erased model against the base model with the same seeds. Held-out wording (world.HELD_OUT_*) is
read here and nowhere an erasure learns from.
"""

from contextlib import contextmanager

from ..generate import generate
from ..miniature import world

# The training phrasing of the forget and retain prompts (all three are world.TEMPLATES).
TEMPLATES = ("a {colour} {concept}", "a picture of a {colour} {concept}", "{colour} {concept}")
PAIR_TEMPLATE = "a {colour1} {shape1} and a {colour2} {shape2}"
GROUPS = ("forget", "held_out_paraphrase", "held_out_template", "retain", "in_prompt")


@contextmanager
def text_encoders_swapped(pipe, encoders):
    """Temporarily run `pipe` with other text encoder(s) ({component_name: module}); nothing else changes."""
    saved = {name: getattr(pipe, name) for name in encoders}
    try:
        for name, module in encoders.items():
            setattr(pipe, name, module)
        yield pipe
    finally:
        for name, module in saved.items():
            setattr(pipe, name, module)


def erasure_prompts(concepts, seeds, retain=()):
    """(prompt, group, shape, colour, seed) rows for an erasure's validation: every colour of every shape (and of
    the neutral blob when it is kept), the concepts' training paraphrases ("paraphrase") and held-out ones
    ("held_out")."""
    rows = []
    for shape in world.SHAPES + tuple(r for r in retain if r not in world.SHAPES):
        group = "forget" if shape in concepts else "retain"
        for colour in world.COLOURS:
            for seed in range(seeds):
                rows.append((f"a {colour} {shape}", group, shape, colour, seed))
    for group, words in (("paraphrase", world.TRAIN_PARAPHRASES), ("held_out", world.HELD_OUT_PARAPHRASES)):
        for shape in concepts:
            for phrase in words[shape]:
                for colour in world.COLOURS:
                    for seed in range(seeds):
                        rows.append((f"a {colour} {phrase}", group, shape, colour, seed))
    return rows


def judge_rows(pipe, judge, rows, num_inference_steps=20, guidance_scale=5.0):
    """Generate and judge every row; returns (metrics, images, verdicts)."""
    images = generate(pipe, [r[0] for r in rows], [r[4] for r in rows], num_inference_steps, guidance_scale)
    verdicts = judge.classify(images)
    acc = {"forget": {}, "paraphrase": {}, "held_out": {}, "retain": {}}
    for group in acc:
        for shape in dict.fromkeys(r[2] for r in rows):
            hits = [v["shape"] == shape for r, v in zip(rows, verdicts) if r[1] == group and r[2] == shape]
            if hits:
                acc[group][shape] = sum(hits) / len(hits)
    on_retain = [(r, v) for r, v in zip(rows, verdicts) if r[1] == "retain"]
    on_forget = [(r, v) for r, v in zip(rows, verdicts) if r[1] == "forget"]
    acc["colour_retain"] = sum(v["colour"] == r[3] for r, v in on_retain) / max(1, len(on_retain))
    acc["colour_forget"] = sum(v["colour"] == r[3] for r, v in on_forget) / max(1, len(on_forget))
    return acc, images, verdicts


def compare(pipe, judge, erased_encoders, concepts, seeds=4, num_inference_steps=20, guidance_scale=5.0, retain=()):
    """Judged metrics of the base pipeline and of the same pipeline with the erased encoder(s), same seeds."""
    rows = erasure_prompts(concepts, seeds, retain)
    before, images_before, _ = judge_rows(pipe, judge, rows, num_inference_steps, guidance_scale)
    with text_encoders_swapped(pipe, erased_encoders):
        after, images_after, _ = judge_rows(pipe, judge, rows, num_inference_steps, guidance_scale)
    return {"original": before, "erased": after}, rows, images_before, images_after


def summary_line(metrics):
    """One line: forget/paraphrase/held-out/retain/colour, original -> erased."""
    o, e = metrics["original"], metrics["erased"]
    mean = lambda d: sum(d.values()) / max(1, len(d))  # noqa: E731
    parts = [f"{g.replace('_', '-')} {mean(o[g]):.0%} -> {mean(e[g]):.0%}" for g in ("forget", "paraphrase", "held_out", "retain")]
    return ", ".join(parts) + f", colour {o['colour_retain']:.0%} -> {e['colour_retain']:.0%}"


def evaluation_rows(concepts, retain_concepts, num_seeds, seed=0, templates=TEMPLATES, in_prompt_seeds=2):
    """Row dicts (prompt, group, concept, colour, seed[, objects, kept]) for `evaluate`, group by group:
    - forget / retain: `templates` (training phrasing) x `num_seeds` seeds for each concept;
    - held_out_paraphrase: the concept's held-out paraphrases in "a {colour} {paraphrase}" and
      "a picture of a {colour} {paraphrase}";
    - held_out_template: every held-out template with the concept's own word;
    - in_prompt: two-object prompts naming an erased concept and a kept shape, both orders ("kept": which object
      must survive).
    Colours rotate over (template, seed), so a concept is seen in every colour without multiplying the image count.
    """
    rows = []

    def add(group, concept, text, index, seeds=num_seeds, **extra):
        colour = world.COLOURS[index % len(world.COLOURS)] if "{colour}" in text else None  # None: not prompted
        rows.append({"prompt": text.format(concept=concept, colour=colour), "group": group, "concept": concept,
                     "colour": colour, "seed": seed + index % seeds, **extra})

    for group, names in (("forget", concepts), ("retain", retain_concepts)):
        for concept in names:
            for t, template in enumerate(templates):
                for s in range(num_seeds):
                    add(group, concept, template, t * num_seeds + s)
    for concept in concepts:
        phrased = [(t, w) for w in world.HELD_OUT_PARAPHRASES[concept] for t in TEMPLATES[:2]]
        for i, (template, word) in enumerate(phrased):
            for s in range(num_seeds):
                add("held_out_paraphrase", concept, template.replace("{concept}", word), i * num_seeds + s)
        for t, template in enumerate(world.HELD_OUT_TEMPLATES):
            for s in range(num_seeds):
                add("held_out_template", concept, template.replace("{shape}", "{concept}"), t * num_seeds + s)
    kept_shapes = [k for k in retain_concepts if k in world.SHAPES]
    for concept in concepts:
        for i, kept in enumerate(kept_shapes):
            for order in (0, 1):
                for s in range(in_prompt_seeds):
                    k = (i * 2 + order) * in_prompt_seeds + s
                    c1, c2 = world.COLOURS[k % 6], world.COLOURS[(k + 3) % 6]
                    objects = [(concept, c1), (kept, c2)] if order == 0 else [(kept, c1), (concept, c2)]
                    (s1, col1), (s2, col2) = objects
                    rows.append({"prompt": PAIR_TEMPLATE.format(shape1=s1, colour1=col1, shape2=s2, colour2=col2),
                                 "group": "in_prompt", "concept": concept, "colour": None, "seed": seed + s,
                                 "objects": objects, "kept": 1 - order})
    return rows


def shape_accuracy(rows, verdicts, group):
    """{concept: share of the group's images the judge labels as that concept}."""
    hits = {}
    for r, v in zip(rows, verdicts):
        if r["group"] == group:
            hits.setdefault(r["concept"], []).append(v["shape"] == r["concept"])
    return {c: sum(h) / len(h) for c, h in hits.items()}


def colour_accuracy(rows, verdicts, group):
    """Share of the group's images whose colour the judge names as prompted (None when no prompt names one)."""
    hits = [v["colour"] == r["colour"] for r, v in zip(rows, verdicts) if r["group"] == group and r["colour"]]
    return sum(hits) / len(hits) if hits else None


def in_prompt_scores(rows, verdicts):
    """Two-object prompts naming an erased concept and a kept shape: the share whose kept object is drawn with its
    colour (in either half), and the share where no half shows the erased concept."""
    kept, gone = [], []
    for r, v in zip(rows, verdicts):
        if r["group"] != "in_prompt":
            continue
        shape, colour = r["objects"][r["kept"]]
        halves = [v["left"], v["right"]]
        kept.append(any(h["shape"] == shape and h["colour"] == colour for h in halves))
        gone.append(all(h["shape"] != r["concept"] for h in halves))
    n = max(1, len(kept))
    return {"kept_right": sum(kept) / n, "erased_gone": sum(gone) / n} if kept else None


def clip_scores(judge, images, prompts):
    """CLIPScore (Hessel et al.) with the judge: 100 * max(cos(image, prompt), 0), one per image."""
    sims = (judge.encode_images(images) * judge.encode_text(list(prompts))).sum(-1)
    return (100.0 * sims.clamp(min=0)).tolist()


def drift(judge, images_a, images_b):
    """Per image pair: (mean absolute pixel difference in [0, 1], perceptual distance 1 - cos of judge features).

    1 - cos is computed as |a - b|^2 / 2 of the unit features: equal, and exactly 0 for identical images."""
    import numpy as np

    pixel = [float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean() / 255.0)
             for a, b in zip(images_a, images_b)]
    perceptual = ((judge.encode_images(images_a) - judge.encode_images(images_b)) ** 2).sum(-1).div(2).tolist()
    return pixel, perceptual

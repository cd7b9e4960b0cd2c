"""Judged metrics of an erasure on the miniature: what the pipeline draws for forget, paraphrase and retain prompts.

The field's protocol (ESD, UCE, MACE): the share of generated images an independent classifier labels as the
concept, for the erased model against the base model with the same seeds.
"""

from contextlib import contextmanager

from ..generate import generate
from ..miniature import world


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
    """(prompt, group, shape, colour, seed) rows: every colour of every shape (and of the neutral blob when it is
    kept), and the concepts' paraphrases."""
    rows = []
    for shape in world.SHAPES + tuple(r for r in retain if r not in world.SHAPES):
        group = "forget" if shape in concepts else "retain"
        for colour in world.COLOURS:
            for seed in range(seeds):
                rows.append((f"a {colour} {shape}", group, shape, colour, seed))
    for shape in concepts:
        for phrase in world.PARAPHRASES[shape]:
            for colour in world.COLOURS:
                for seed in range(seeds):
                    rows.append((f"a {colour} {phrase}", "paraphrase", shape, colour, seed))
    return rows


def judge_rows(pipe, judge, rows, num_inference_steps=20, guidance_scale=5.0):
    """Generate and judge every row; returns (metrics, images, verdicts)."""
    images = generate(pipe, [r[0] for r in rows], [r[4] for r in rows], num_inference_steps, guidance_scale)
    verdicts = judge.classify(images)
    acc = {"forget": {}, "paraphrase": {}, "retain": {}}
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
    """One line: forget/paraphrase/retain/colour, original -> erased."""
    o, e = metrics["original"], metrics["erased"]
    mean = lambda d: sum(d.values()) / max(1, len(d))  # noqa: E731
    return (f"forget {mean(o['forget']):.0%} -> {mean(e['forget']):.0%}, paraphrase {mean(o['paraphrase']):.0%} -> "
            f"{mean(e['paraphrase']):.0%}, retain {mean(o['retain']):.0%} -> {mean(e['retain']):.0%}, "
            f"colour {o['colour_retain']:.0%} -> {e['colour_retain']:.0%}")


def evaluation_rows(concepts, retain_concepts, templates, num_seeds, seed=0):
    """Row dicts (prompt, group, concept, colour, seed) for `evaluate`: forget and retain prompts from `templates`
    ({concept}, optionally {colour}) with `num_seeds` seeds each, and "rephrase" prompts: every template and
    paraphrase the miniature was trained on that the forget prompts do not already use, one seed each.

    Colours rotate over (template, seed), so a concept is seen in every colour without multiplying the image count.
    """
    rows = []

    def add(group, concept, text, index):
        colour = world.COLOURS[index % len(world.COLOURS)] if "{colour}" in text else None  # None: not prompted
        rows.append({"prompt": text.format(concept=concept, colour=colour), "group": group, "concept": concept,
                     "colour": colour, "seed": seed + index % num_seeds})

    for group, names in (("forget", concepts), ("retain", retain_concepts)):
        for concept in names:
            for t, template in enumerate(templates):
                for s in range(num_seeds):
                    add(group, concept, template, t * num_seeds + s)
    known = [t.replace("{shape}", "{concept}") for t in world.TEMPLATES]
    for concept in concepts:
        pairs = [(t, w) for w in world.shape_words(concept) for t in known if not (w == concept and t in templates)]
        for i, (template, word) in enumerate(pairs):
            add("rephrase", concept, template.replace("{concept}", word), i)
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

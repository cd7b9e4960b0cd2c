"""Judged metrics of an erasure on the miniature: what the pipeline draws for forget, paraphrase and retain prompts.

The field's protocol (ESD, UCE, MACE): the share of generated images an independent classifier labels as the
concept, for the erased model against the base model with the same seeds.
"""

from contextlib import contextmanager

from .generate import generate
from .miniature import world


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


def erasure_prompts(concepts, seeds):
    """(prompt, group, shape, colour, seed) rows: every colour of every shape, and the concepts' paraphrases."""
    rows = []
    for shape in world.SHAPES:
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
        for shape in world.SHAPES:
            hits = [v["shape"] == shape for r, v in zip(rows, verdicts) if r[1] == group and r[2] == shape]
            if hits:
                acc[group][shape] = sum(hits) / len(hits)
    on_retain = [(r, v) for r, v in zip(rows, verdicts) if r[1] == "retain"]
    on_forget = [(r, v) for r, v in zip(rows, verdicts) if r[1] == "forget"]
    acc["colour_retain"] = sum(v["colour"] == r[3] for r, v in on_retain) / max(1, len(on_retain))
    acc["colour_forget"] = sum(v["colour"] == r[3] for r, v in on_forget) / max(1, len(on_forget))
    return acc, images, verdicts


def compare(pipe, judge, erased_encoders, concepts, seeds=4, num_inference_steps=20, guidance_scale=5.0):
    """Judged metrics of the base pipeline and of the same pipeline with the erased encoder(s), same seeds."""
    rows = erasure_prompts(concepts, seeds)
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

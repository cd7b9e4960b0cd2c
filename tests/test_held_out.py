"""Held-out discipline: the world's held-out paraphrases and templates reach no erasure data, checked through the
code that builds the data (renderer pairs, self-generation templates, anchors, the token-state caption sets); and
which of those captions the adversarial term attacks (the data's own, text["core"])."""

import re
from types import SimpleNamespace

import pytest

from erase_diffusion import data
from erase_diffusion.erasure_setup import caption_sets, load_pairs
from erase_diffusion.families import load_encoders
from erase_diffusion.miniature import clip_path, model_path, world
from erase_diffusion.neighbours import mine
from erase_diffusion.train import parse_args


def held_out_patterns():
    words = [re.compile(rf"\b{re.escape(p)}\b") for ps in world.HELD_OUT_PARAPHRASES.values() for p in ps]
    templates = []
    for t in world.HELD_OUT_TEMPLATES + world.HELD_OUT_PAIR_TEMPLATES:
        skeleton = re.escape(t)
        for slot in ("colour", "shape", "colour1", "shape1", "colour2", "shape2"):
            skeleton = skeleton.replace(re.escape("{" + slot + "}"), r"[\w\- ]+")
        templates.append(re.compile(skeleton))
    return words + templates


def args(**flags):
    """erase's own defaults (every lever that shapes captions on), with caption noise, suffix captions and hard pairs on
    too and fewer images."""
    defaults = vars(parse_args(["--concept", "unused", "--output_dir", "unused"]))
    return SimpleNamespace(**{**defaults, "num_forget_images": 96, "num_retain_images": 96, "caption_noise": 0.5,
                              "suffix_captions": 256, "hard_pairs": 2, **flags})


@pytest.fixture(scope="module")
def encoder():
    return load_encoders(model_path(), "miniature", [clip_path()])[0]


@pytest.mark.parametrize("concept", world.SHAPES)
def test_no_held_out_wording_reaches_erasure_data(concept, encoder):
    retain = [s for s in world.SHAPES if s != concept]
    a = args()
    forget, kept, _, _ = load_pairs(a, "miniature", [concept], retain, world.NEUTRAL)
    text, _ = caption_sets(a, "miniature", [encoder], [concept], retain, world.NEUTRAL, forget, kept)
    captions = (forget.captions + forget.anchored + kept.captions + text["forget"] + text["anchored"] + text["retain"]
                + [t.format(concept) for t in (*data.DEFAULT_TEMPLATES, *data.default_templates("miniature"))]
                + [world.NEUTRAL])
    assert len(text["forget"]) > len(forget.captions)  # pairs and noise made the sets larger
    leaks = [(c, p.pattern) for c in captions for p in held_out_patterns() if p.search(c)]
    assert not leaks, leaks[:5]


def test_the_adversarial_term_attacks_the_renderer_data_s_own_captions_once_each(encoder):
    retain = [s for s in world.SHAPES if s != "triangle"]
    a = args()
    forget, kept, _, _ = load_pairs(a, "miniature", ["triangle"], retain, world.NEUTRAL)
    text, _ = caption_sets(a, "miniature", [encoder], ["triangle"], retain, world.NEUTRAL, forget, kept)
    assert len(set(forget.captions)) < len(forget.captions)  # rendered captions repeat
    assert text["forget"][:text["core"]] == list(dict.fromkeys(forget.captions))  # not pairs, noise or phrases


def test_by_name_on_the_miniature_the_captions_follow_its_own_templates_in_every_colour(encoder):
    # 8 generated images name 8 templates; the token-state terms and the adversary need no image, so they read all
    forget = data.Pairs([], ["a red triangle", "a triangle in red"], ["a red blob", "a blob in red"])
    kept = data.Pairs([], ["a green circle"])
    text, _ = caption_sets(args(data_source="generate"), "miniature", [encoder], ["triangle"], ["circle", "square"],
                           world.NEUTRAL, forget, kept)
    core = text["forget"][:text["core"]]
    assert set(core) == {t.format("triangle") for t in data.default_templates("miniature")}
    assert len(core) == len(world.TEMPLATES) * len(world.COLOURS)
    assert {t.format("square") for t in data.default_templates("miniature")} <= set(text["retain"])
    leaks = [(c, p.pattern) for c in text["forget"] + text["retain"] for p in held_out_patterns() if p.search(c)]
    assert not leaks, leaks[:5]


def test_mining_reads_the_encoder_not_the_held_out_lists(encoder, monkeypatch):
    retain = [s for s in world.SHAPES if s != "triangle"]
    templates = [f"a {c} {{}}" for c in world.COLOURS]
    found = mine(encoder, ["triangle"], retain, world.NEUTRAL, templates, list(world.COLOURS))
    monkeypatch.setattr(world, "HELD_OUT_PARAPHRASES", {s: () for s in world.SHAPES})
    monkeypatch.setattr(world, "HELD_OUT_TEMPLATES", ())
    assert mine(encoder, ["triangle"], retain, world.NEUTRAL, templates, list(world.COLOURS)) == found
    assert found["triangle"] and "triangle" not in found["triangle"]


def test_an_erasure_that_mined_held_out_words_is_flagged_by_the_evaluation(encoder, tmp_path):
    """Mining reads the encoder's whole vocabulary, and on the miniature it finds the held-out paraphrases themselves:
    the reason it is off by default. An erasure made with it is reported as not held out, never silently."""
    import json

    from erase_diffusion.evaluation.evaluate import held_out_seen

    retain = [s for s in world.SHAPES if s != "circle"]
    a = args(mine_neighbours=True)
    forget, kept, _, _ = load_pairs(a, "miniature", ["circle"], retain, world.NEUTRAL)
    _, neighbours = caption_sets(a, "miniature", [encoder], ["circle"], retain, world.NEUTRAL, forget, kept)
    (tmp_path / "erasure.json").write_text(json.dumps({"neighbours": neighbours, "levers": {"mine_neighbours": True}}))
    seen = held_out_seen(str(tmp_path))
    assert seen and set(seen) <= set(world.HELD_OUT_PARAPHRASES["circle"]), (neighbours, seen)
    (tmp_path / "erasure.json").write_text(json.dumps({"neighbours": {}, "levers": {"vocabulary_captions": 256}}))
    assert held_out_seen(str(tmp_path)) == []

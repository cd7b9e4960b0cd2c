"""The token-state terms' captions (prompts.py): what the forget and retain sets may and may not contain."""

import re

from erase_diffusion import data
from erase_diffusion.miniature import world
from erase_diffusion.prompts import token_state_sets

KEPT = ("circle", "square", "star")


def by_name_sets(**kwargs):
    """The sets of a name-only erasure: template captions, colours named only by the vocabulary captions."""
    forget = [t.format("triangle") for t in data.DEFAULT_TEMPLATES]
    retain = [t.format(s) for t in data.DEFAULT_TEMPLATES for s in KEPT]
    return token_state_sets(forget, retain, ["triangle"], [], "blob", keep=set(world.COLOURS),
                            vocabulary=list(world.COLOURS), retain_names=KEPT, vocabulary_size=64, **kwargs)


def test_every_forget_caption_names_the_concept_and_its_twin_the_anchor_in_its_place():
    forget, anchored, retain = by_name_sets()
    assert any(re.search(rf"\b{c}\b", f) for f in forget for c in world.COLOURS)  # the vocabulary reached the forget set
    for f, a in zip(forget, anchored):
        assert re.search(r"\btriangle\b", f), f  # a forget caption without the concept would erase nothing but harm
        assert a == f.replace("triangle", "blob")
    assert not any("triangle" in r for r in retain)


def test_pairs_and_noise_keep_the_same_guarantees():
    forget, anchored, retain = by_name_sets(caption_noise=0.5, seed=3)
    assert any(" and " in f for f in forget) and any(" and " in r for r in retain)
    assert all("triangle" in f and "triangle" not in a for f, a in zip(forget, anchored))
    assert not any("triangle" in r for r in retain)


def test_template_captions_also_come_as_bare_object_phrases():
    # self-generated captions always follow a template; the phrases put colour and object at the first positions
    forget, anchored, retain = by_name_sets()
    for s in KEPT:
        assert f"a {s}" in retain
    assert any(re.fullmatch(rf"a ({'|'.join(world.COLOURS)}) ({'|'.join(KEPT)})", r) for r in retain)
    assert "a triangle" in forget and anchored[forget.index("a triangle")] == "a blob"


def test_the_empty_prompt_leads_the_retain_set_only_when_asked():
    # classifier-free guidance encodes '' with the erased encoder: its states are kept like a retain caption's
    forget, anchored, retain = by_name_sets(unconditional=True)
    assert retain[0] == "" and retain.count("") == 1 and "" not in forget
    assert "" not in by_name_sets()[2] and retain[1:] == by_name_sets()[2]


def test_suffix_captions_append_the_captions_own_words_after_the_concept_and_never_its_name():
    # where the word search appends its words; the words are the data's own, so nothing held out reaches the sets
    forget, anchored, retain = by_name_sets(suffix_size=40, seed=2)
    plain_forget, _, plain_retain = by_name_sets(seed=2)
    added = [f for f in forget if f not in plain_forget]
    assert len(added) > 20 and len([r for r in retain if r not in plain_retain]) > 20
    own = {w for c in plain_forget + plain_retain for w in re.findall(r"[a-z]+", c)} - {"triangle", "blob"}
    for f in added:
        head, tail = re.split(r"\btriangle\b", f, maxsplit=1)
        assert tail.split() and set(tail.split()) <= own, f  # words after the concept, each of the captions' own
        assert anchored[forget.index(f)] == f"{head}blob{tail}"
    assert not any("triangle" in r for r in retain)
    assert by_name_sets(suffix_size=0, seed=2) == (plain_forget, by_name_sets(seed=2)[1], plain_retain)


def test_hard_pairs_take_half_their_kept_object_from_the_named_kept_concepts():
    # the kept concept nearest the erased one is where its erasure spills over in two-object prompts
    forget, anchored, retain = by_name_sets(seed=1, hard=["square"])
    def share(captions):  # of the two-object captions, those naming the square
        pairs = [c for c in captions if " and " in c]
        return sum("square" in p for p in pairs) / len(pairs)

    assert share(forget) > 0.55 and share(by_name_sets(seed=1)[0]) < 0.45  # ~2/3 against ~1/3 with 3 kept shapes
    assert all("triangle" in f and a == f.replace("triangle", "blob") for f, a in zip(forget, anchored))
    assert not any("triangle" in r for r in retain)
    assert by_name_sets(seed=1, hard=()) == by_name_sets(seed=1)  # off: the same sets, draw for draw


def test_the_default_few_generated_images_cover_every_colour_and_vary_the_template():
    """Images take the templates in turn: the default 8 once were 7 red and 1 green (colour-major order)."""
    first = data.default_templates("miniature")[:len(world.COLOURS)]
    assert {c for t in first for c in world.COLOURS if re.search(rf"\b{c}\b", t)} == set(world.COLOURS)
    assert len({re.sub("|".join(world.COLOURS), "", t) for t in first}) == len(first)  # no template twice
    assert len(set(data.default_templates("miniature"))) == len(world.COLOURS) * len(world.TEMPLATES)


def test_a_caption_s_gradient_images_are_those_naming_its_colours():
    from erase_diffusion.prompts import same_words

    images = ["a red triangle", "a triangle in blue", "red triangle", "a picture of a triangle"]
    pools = same_words(["a red blob", "a blob", "a green blob", "a blue blob and a red star"], images, world.COLOURS)
    # red images only; no colour named or no image with it: any image; two colours: images naming both (none here)
    assert pools == [[0, 2], None, None, None]


def test_the_guard_s_scenes_name_the_anchor_beside_a_kept_concept_and_its_captions_a_concept_in_the_anchor_s_place():
    from erase_diffusion.data import Pairs
    from erase_diffusion.erasure_setup import guarded_captions
    from erase_diffusion.prompts import guard_prompts, is_pair

    templates = data.default_templates("miniature")
    prompts, offsets = guard_prompts(world.NEUTRAL, "square", templates, 6, seed=0)
    assert offsets == list(range(6)) and all(is_pair(p) for p in prompts)
    assert [world.parse(p)[0][0] for p in prompts] == [world.NEUTRAL, "square"] * 3  # the anchor first every other one
    assert {s for p in prompts for s, _ in world.parse(p)} == {world.NEUTRAL, "square"}
    text = {"forget": ["a red circle and a blue square"], "anchored": ["a red blob and a blue square"]}
    guard = Pairs(["drawn 0", "drawn 1", "drawn 2"], ["a red blob and a blue square", "a green blob and a star",
                                                     "a star and a red blob"])
    scenes = guarded_captions(text, guard, ["circle", "heart"], world.NEUTRAL)
    # a caption already among the forget captions keeps its index; new ones come after, each with its scene's caption
    assert scenes == {0: "drawn 0", 1: "drawn 1", 2: "drawn 2"}
    assert text["forget"][1:] == ["a green heart and a star", "a star and a red circle"]
    assert text["anchored"][1:] == guard.captions[1:]

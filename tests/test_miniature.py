"""The built-in miniature: its world, tokenizer, shipped pipeline and judge, and the quality bar it must hold."""

import json
import os
import random

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from erase_diffusion import miniature
from erase_diffusion.miniature import tokenizer as mini_tok
from erase_diffusion.miniature import train as mini_train
from erase_diffusion.miniature import world
from erase_diffusion.miniature.quality import held_out_quality, judged_quality, pair_quality

# The two-object bar the shipped miniature is held to (the issue's: both shapes 85 %, each object's colour 80 %).
PAIR_BAR, PAIR_COLOUR_BAR = 0.85, 0.80


def test_world_renders_every_shape_and_paraphrases_avoid_the_shape_word():
    rng = random.Random(0)
    for shape in world.SHAPES:
        im = world.render(shape, "red", rng)
        assert im.size == (32, 32) and im.mode == "RGB"
        assert len(world.PARAPHRASES[shape]) >= 4 and len(world.HELD_OUT_PARAPHRASES[shape]) >= 2, shape
        assert all(shape not in p for p in world.PARAPHRASES[shape])
    caps = world.all_captions("triangle", "blue")
    assert "a blue triangle" in caps and "a blue three-sided shape" in caps
    # A red triangle really is red: its pixels are far redder than they are blue or green.
    arr = torch.from_numpy(np.asarray(world.render("triangle", "red", rng), dtype=np.float32)).reshape(-1, 3)
    reddest = arr[(arr[:, 0] - arr[:, 2]) > 100]
    assert len(reddest) > 50


def test_held_out_and_training_phrasing_never_overlap():
    for shape in world.SHAPES:
        assert not set(world.HELD_OUT_PARAPHRASES[shape]) & set(world.TRAIN_PARAPHRASES[shape])
        assert set(world.HELD_OUT_PARAPHRASES[shape]) | set(world.TRAIN_PARAPHRASES[shape]) == set(world.PARAPHRASES[shape])
        assert not set(world.HELD_OUT_PARAPHRASES[shape]) & set(world.shape_words(shape))
    assert len(world.HELD_OUT_TEMPLATES) >= 2 and not set(world.HELD_OUT_TEMPLATES) & set(world.TEMPLATES)
    assert not set(world.HELD_OUT_PAIR_TEMPLATES) & set(world.PAIR_TEMPLATES)
    # a held-out template's own words are spelt out in characters: no training caption gave them a token
    template_words = {w for t in world.HELD_OUT_TEMPLATES for w in t.replace(",", " ").split() if "{" not in w}
    assert {"illustration", "flat", "colours", "favourite"} <= template_words - set(world.vocabulary())


def test_two_object_scenes_put_one_object_in_each_half_and_prompts_say_their_size():
    rng = random.Random(1)
    scene = world.render_scene([("triangle", "red"), ("circle", "blue")], rng)
    assert scene.size == world.PAIR_SIZE == (64, 32)
    arr = np.asarray(scene, dtype=np.float32)
    red = (arr[..., 0] - arr[..., 2]) > 100
    blue = (arr[..., 2] - arr[..., 0]) > 100
    assert red[:, :32].sum() > 50 and red[:, 32:].sum() == 0 and blue[:, 32:].sum() > 50 and blue[:, :32].sum() == 0
    assert world.parse("a red wedge and a blue disc") == [("triangle", "red"), ("circle", "blue")]
    assert world.image_size("a red pyramid next to a green blob") == (64, 32)
    assert world.image_size("an illustration of a yellow star") == (32, 32)


def test_tokenizer_gives_each_world_word_one_token_and_keeps_max_length(tmp_path):
    tok = mini_tok.build_tokenizer()
    for word in world.vocabulary():
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    tok.save_pretrained(tmp_path)
    from transformers import CLIPTokenizer

    again = CLIPTokenizer.from_pretrained(tmp_path)
    assert again.model_max_length == mini_tok.MAX_LENGTH
    assert again("a red star").input_ids == tok("a red star").input_ids
    assert tok.unk_token_id not in tok("zebra crossing #7").input_ids[1:-1]


def test_shipped_pipeline_loads_offline_with_plain_diffusers_and_is_deterministic():
    pipe = StableDiffusionPipeline.from_pretrained(miniature.model_path(), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    run = lambda: pipe("a red star", num_inference_steps=5, generator=torch.Generator().manual_seed(0),  # noqa: E731
                       output_type="np").images
    a, b = run(), run()
    assert a.shape == (1, 32, 32, 3)
    assert (a == b).all()
    assert a.std() > 0.05  # an image, not a flat field


# Seeds per prompt: the shipped miniature draws every one of 4 seeds' single-object and 2 seeds' held-out images right
# and 98 % of 4 seeds' two-object scenes (2026-12-07); fewer seeds halve the time and keep every bar's margin.
def test_single_object_and_held_out_bars(mini_pipe, judge):
    quality, images = judged_quality(mini_pipe, judge, seeds=2)
    assert len(images) == 72
    assert quality["shape"] >= 0.95 and quality["min_shape"] >= 0.85 and quality["colour"] >= 0.95, quality
    held_out = held_out_quality(mini_pipe, judge, seeds=1)
    for key in ("held_out_paraphrases", "held_out_templates"):
        assert held_out[key]["shape"] >= 0.90, (key, held_out[key])


def test_two_object_bar(mini_pipe, judge):
    quality = pair_quality(mini_pipe, judge, seeds=2)
    assert quality["pair_both"] >= PAIR_BAR and quality["pair_colour"] >= PAIR_COLOUR_BAR, quality


def test_judge_on_fresh_renders_single_and_two_object(judge):
    fresh = world.sample(300, seed=987_654)
    verdicts = judge.classify([f[0] for f in fresh])
    shape_acc = sum(v["shape"] == f[2] for v, f in zip(verdicts, fresh)) / len(fresh)
    colour_acc = sum(v["colour"] == f[3] for v, f in zip(verdicts, fresh)) / len(fresh)
    assert shape_acc >= 0.98 and colour_acc >= 0.98, (shape_acc, colour_acc)
    assert all(0.0 <= v["shape_prob"] <= 1.0 for v in verdicts)
    scenes = world.sample_pairs(100, seed=987_655)
    on_scenes = judge.classify_scenes([s[0] for s in scenes], [s[2] for s in scenes])
    assert sum(v["shapes_match"] for v in on_scenes) / len(scenes) >= 0.98
    assert sum(sum(v["colours_right"]) for v in on_scenes) / (2 * len(scenes)) >= 0.98


def test_every_training_stage_runs_tiny_and_writes_loadable_weights(tmp_path):
    out = str(tmp_path / "mini")
    report = mini_train.main(mini_train.parse_args(["--output_dir", out, "--tiny", "--quality_seeds", "1"]))
    assert set(report) == set(mini_train.STAGES) | {"quality"}
    assert miniature.is_miniature(out)
    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a red star", num_inference_steps=2, output_type="np").images
    assert img.shape == (1, 32, 32, 3)
    scene = pipe("a red star and a blue disc", num_inference_steps=2, width=64, height=32, output_type="np").images
    assert scene.shape == (1, 32, 64, 3)
    from erase_diffusion.evaluation.judge import Judge
    from transformers import CLIPModel

    assert len(Judge(miniature.judge_path(out)).classify([world.render("star", "red")])) == 1
    assert CLIPModel.from_pretrained(miniature.clip_path(out)).config.text_config.hidden_size == 32
    report = json.load(open(os.path.join(out, "training_report.json")))
    assert report["unet"]["seconds"] > 0 and 0 <= report["quality"]["pair_both"] <= 1

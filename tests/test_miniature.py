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
from erase_diffusion.miniature.train_unet import judged_quality


def test_world_renders_every_shape_and_paraphrases_avoid_the_shape_word():
    rng = random.Random(0)
    for shape in world.SHAPES:
        im = world.render(shape, "red", rng)
        assert im.size == (32, 32) and im.mode == "RGB"
        assert world.PARAPHRASES[shape], shape
        assert all(shape not in p for p in world.PARAPHRASES[shape])
    caps = world.all_captions("triangle", "blue")
    assert "a blue triangle" in caps and "a blue three-sided shape" in caps
    # A red triangle really is red: its pixels are far redder than they are blue or green.
    arr = torch.from_numpy(np.asarray(world.render("triangle", "red", rng), dtype=np.float32)).reshape(-1, 3)
    reddest = arr[(arr[:, 0] - arr[:, 2]) > 100]
    assert len(reddest) > 50


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


def test_judged_quality_bar(mini_pipe, judge):
    quality, images = judged_quality(mini_pipe, judge, seeds=4)
    assert len(images) == 144
    assert quality["shape"] >= 0.90, quality
    assert quality["min_shape"] >= 0.75, quality
    assert quality["colour"] >= 0.90, quality


def test_judge_on_fresh_renders(judge):
    fresh = world.sample(300, seed=987_654)
    verdicts = judge.classify([f[0] for f in fresh])
    shape_acc = sum(v["shape"] == f[2] for v, f in zip(verdicts, fresh)) / len(fresh)
    colour_acc = sum(v["colour"] == f[3] for v, f in zip(verdicts, fresh)) / len(fresh)
    assert shape_acc >= 0.98 and colour_acc >= 0.98, (shape_acc, colour_acc)
    assert all(0.0 <= v["shape_prob"] <= 1.0 for v in verdicts)


def test_every_training_stage_runs_tiny_and_writes_loadable_weights(tmp_path):
    out = str(tmp_path / "mini")
    report = mini_train.main(mini_train.parse_args(["--output_dir", out, "--tiny"]))
    assert set(report) == set(mini_train.STAGES)
    assert miniature.is_miniature(out)
    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a red star", num_inference_steps=2, output_type="np").images
    assert img.shape == (1, 32, 32, 3)
    from erase_diffusion.evaluation.judge import Judge
    from transformers import CLIPModel

    assert len(Judge(miniature.judge_path(out)).classify([world.render("star", "red")])) == 1
    assert CLIPModel.from_pretrained(miniature.clip_path(out)).config.text_config.hidden_size == 32
    assert json.load(open(os.path.join(out, "training_report.json")))["unet"]["seconds"] > 0

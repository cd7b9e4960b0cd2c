"""The reusable retain set: generated once per base and settings, reused by later erasures, never used corrupt, and
safe when two runs write it at once."""

import json
import multiprocessing
import os

import numpy as np
import pytest

from erase_diffusion import retain_cache
from erase_diffusion.generate import generate
from erase_diffusion.miniature import model_path
from erase_diffusion.train import main, parse_args

TEMPLATES = ["a photo of a {}", "a picture of a {}"]


def gen(pipe, prompts, seeds):
    return generate(pipe, prompts, seeds, num_inference_steps=3, guidance_scale=5.0)


def run(pipe, cache_dir, concepts=("circle", "square")):
    return retain_cache.retain_pairs(pipe, model_path(), list(concepts), TEMPLATES, 3, 7, 3, 5.0, str(cache_dir), gen)


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def test_generated_once_then_reused_with_the_same_images(mini_pipe, tmp_path):
    images, captions, stats = run(mini_pipe, tmp_path)
    assert stats == {"cached": [], "generated": ["circle", "square"]} and len(images) == 6
    again, captions_again, stats = run(mini_pipe, tmp_path, ("square", "circle", "star"))
    assert stats == {"cached": ["square", "circle"], "generated": ["star"]}
    assert same(again[:3], images[3:]) and captions_again[:3] == captions[3:]
    assert retain_cache.describe(str(tmp_path))[0][1] == 3  # three concepts under one (base, settings) entry


def test_a_corrupt_or_half_written_entry_is_regenerated_not_used(mini_pipe, tmp_path):
    images, _, _ = run(mini_pipe, tmp_path, ("circle",))
    (entry,) = [os.path.join(r, n) for r, _, ns in os.walk(tmp_path) for n in ns if n.endswith(".safetensors")]
    data = open(entry, "rb").read()
    with open(entry, "wb") as f:
        f.write(data[: len(data) // 2])  # a crash in mid-write (were it not renamed into place)
    assert retain_cache.load_entry(entry) is None
    again, _, stats = run(mini_pipe, tmp_path, ("circle",))
    assert stats["generated"] == ["circle"] and same(again, images)
    flipped = bytearray(open(entry, "rb").read())
    flipped[-1] ^= 0xFF  # bit rot in the pixels: the digest no longer matches
    open(entry, "wb").write(bytes(flipped))
    assert retain_cache.load_entry(entry) is None


def write_entry(path, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(4)]
    for _ in range(20):
        retain_cache.save_entry(path, images, [f"caption {seed}"] * 4)


def test_two_writers_at_once_leave_one_complete_entry(tmp_path):
    path = str(tmp_path / "entry.safetensors")
    procs = [multiprocessing.get_context("spawn").Process(target=write_entry, args=(path, s)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    images, captions = retain_cache.load_entry(path)
    assert len(images) == 4 and captions[0] in ("caption 1", "caption 2")
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


@pytest.mark.filterwarnings("ignore")
def test_a_warm_erasure_by_name_generates_only_its_forget_images(tmp_path):
    flags = ["--concept", "triangle", "--data_source", "generate", "--num_forget_images", "4", "--num_retain_images",
             "10", "--data_inference_steps", "3", "--max_train_steps", "3", "--validation_seeds", "0",
             "--report_to", "none", "--checkpointing_steps", "0", "--linear_gradient_samples", "1",
             "--retain_cache_dir", str(tmp_path / "cache")]
    cold = main(parse_args([*flags, "--output_dir", str(tmp_path / "cold")]))["record"]["costs"]
    warm = main(parse_args([*flags, "--output_dir", str(tmp_path / "warm")]))["record"]["costs"]
    assert cold["unet_evals_retain_images"] > 0 and warm["unet_evals_retain_images"] == 0
    assert warm["unet_evals_forget_images"] == cold["unet_evals_forget_images"] == 4 * 3 * 2
    assert warm["retain_cache"]["cached"] == ["circle", "square", "star", "heart", "cross"]
    record = json.load(open(tmp_path / "warm" / "erasure.json"))
    assert record["costs"]["optimizer_steps"] == 3


def test_data_amounts_default_per_source_and_keep_what_the_user_gave():
    from types import SimpleNamespace

    from erase_diffusion.defaults import data_defaults

    def args(source, forget=None):
        return SimpleNamespace(data_source=source, forget_data_dir=None, num_forget_images=forget,
                               num_retain_images=None, data_inference_steps=None)
    generated, rendered = args("generate"), args("auto")
    data_defaults(generated, "miniature")
    data_defaults(rendered, "miniature")  # auto on the miniature: its renderer, whose images cost nothing
    assert (generated.num_forget_images, generated.num_retain_images, generated.data_inference_steps) == (8, 40, 10)
    assert (rendered.num_forget_images, rendered.num_retain_images) == (192, 384)
    real = args("auto")
    data_defaults(real, "sd1")  # a real base has no renderer: it generates
    assert real.num_forget_images == 8
    given = args("generate", forget=32)
    data_defaults(given, "miniature")
    assert given.num_forget_images == 32 and given.num_retain_images == 40


def test_the_guard_s_generated_scenes_are_cached_per_kept_concept_and_a_later_concept_reuses_them(tmp_path):
    """--pair_guard_latents generated: the base's drawings of the anchor beside each kept concept name no erased concept,
    so the circle's erasure after the triangle's draws only those beside the triangle (kept now, erased then)."""
    flags = ["--data_source", "generate", "--num_forget_images", "4", "--num_retain_images", "10",
             "--data_inference_steps", "3", "--max_train_steps", "3", "--validation_seeds", "0", "--report_to", "none",
             "--checkpointing_steps", "0", "--linear_gradient_samples", "1", "--lambda_pair_guard", "1",
             "--pair_guard_latents", "generated", "--pair_guard_scenes", "20", "--retain_cache_dir", str(tmp_path / "c")]
    cold = main(parse_args([*flags, "--concept", "triangle", "--output_dir", str(tmp_path / "t")]))["record"]
    warm = main(parse_args([*flags, "--concept", "circle", "--output_dir", str(tmp_path / "c0")]))["record"]
    assert cold["costs"]["guard_cache"] == {"cached": [], "generated": ["circle", "square", "star", "heart", "cross"]}
    assert warm["costs"]["guard_cache"] == {"cached": ["square", "star", "heart", "cross"], "generated": ["triangle"]}
    # 4 scenes per kept concept, 3 steps with guidance: 6 UNet evaluations each, counted in the data's
    assert (cold["costs"]["unet_evals_guard_scenes"], warm["costs"]["unet_evals_guard_scenes"]) == (20 * 6, 4 * 6)
    assert warm["costs"]["unet_evals_data"] == 4 * 6 + 2 * 6 + 4 * 6  # its forget images; the triangle's retain, scenes
    assert warm["levers"]["pair_guard_latents"] == "generated" and warm["costs"]["unet_evals_training"] > 0

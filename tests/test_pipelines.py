"""pipelines/: erasures as drop-in parts of diffusers pipelines (full weights and LoRA, every SD family)."""

import numpy as np
import pytest
import torch
from diffusers import (StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline)
from PIL import Image
from safetensors.torch import load_file

import quick
from erase_diffusion.errors import UsageError
from erase_diffusion.generate import generate
from erase_diffusion.evaluation.metrics import erasure_prompts, judge_rows
from erase_diffusion.layout import canonical_state_dict
from erase_diffusion.miniature import model_path, world
from erase_diffusion.train import main, parse_args
from pipelines import compare, load_erased_pipeline, paired_pipelines

BASE = model_path()
TRIANGLES = [f"a {c} triangle" for c in world.COLOURS] * 2
SEEDS = [0] * 6 + [1] * 6


def erase(out, *extra):
    return main(parse_args(["--concept", "triangle", "--output_dir", str(out), "--report_to", "none",
                            "--checkpointing_steps", "0", "--linear_gradient_samples", "1", *extra]))


@pytest.fixture(scope="module")
def full(default_erasure):
    return default_erasure[0]


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "no-triangle-lora"
    return out, erase(out, "--lora_rank", "4", "--validation_seeds", "1", "--max_train_steps", "60",
                      "--adversarial_every", "0", *quick.SMALL_DATA)["record"]


def same(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def triangle_rate(judge, images):
    return sum(v["shape"] == "triangle" for v in judge.classify(images)) / len(images)


def test_loaded_weights_equal_the_saved_ones_bit_for_bit(full):
    pipe = load_erased_pipeline(BASE, full)
    saved = load_file(full / "text_encoder" / "model.safetensors")
    loaded = canonical_state_dict(pipe.text_encoder)
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_paired_pipelines_share_parts_and_the_original_is_plain_diffusers(full, judge):
    original, erased = paired_pipelines(BASE, full)
    for part in ("unet", "vae", "tokenizer"):
        assert getattr(original, part) is getattr(erased, part)
    assert original.text_encoder is not erased.text_encoder
    plain = StableDiffusionPipeline.from_pretrained(BASE, safety_checker=None)
    plain.set_progress_bar_config(disable=True)
    before, after = compare(original, erased, TRIANGLES, SEEDS)
    assert same(before, generate(plain, TRIANGLES, SEEDS))
    assert triangle_rate(judge, before) >= 0.9 and triangle_rate(judge, after) <= 0.1


def test_paired_pipelines_keep_the_callers_dtype(full):
    original, erased = paired_pipelines(BASE, full, dtype=torch.bfloat16)
    assert original.unet.dtype == erased.unet.dtype == torch.bfloat16
    assert original.text_encoder.dtype == erased.text_encoder.dtype == torch.bfloat16
    # The trap this avoids: from_pipe without dtype= casts the shared modules, changing the original too.
    StableDiffusionImg2ImgPipeline.from_pipe(original)
    assert original.unet.dtype == torch.float32


def test_lora_strength_one_matches_the_merged_erasure_and_zero_is_the_original(lora, judge):
    out, record = lora
    rows = erasure_prompts(["triangle"], seeds=1)
    _, erased = paired_pipelines(BASE, out, strength=1.0)
    metrics, _, _ = judge_rows(erased, judge, rows)
    merged = record["judge_metrics"]["erased"]
    for group in ("forget", "paraphrase", "retain"):
        for shape, acc in merged[group].items():
            assert abs(metrics[group][shape] - acc) <= 0.05, (group, shape)
    original, untouched = paired_pipelines(BASE, out, strength=0.0)
    assert same(*compare(original, untouched, TRIANGLES[:4], SEEDS[:4]))


def test_lora_unload_restores_the_original_exactly(lora):
    pipe = load_erased_pipeline(BASE, lora[0])
    plain = load_erased_pipeline(BASE, lora[0], strength=0.0)
    erased = generate(pipe, TRIANGLES[:3], SEEDS[:3])
    pipe.unload_lora_weights()
    restored = generate(pipe, TRIANGLES[:3], SEEDS[:3])
    assert not same(erased, restored) and same(restored, generate(plain, TRIANGLES[:3], SEEDS[:3]))


def test_full_weights_strength_blends_towards_the_base(full):
    half = load_erased_pipeline(BASE, full, strength=0.5)
    base = canonical_state_dict(StableDiffusionPipeline.from_pretrained(BASE, safety_checker=None).text_encoder)
    erased = load_file(full / "text_encoder" / "model.safetensors")
    k = "text_model.encoder.layers.0.mlp.fc1.weight"
    assert torch.allclose(canonical_state_dict(half.text_encoder)[k], (base[k] + erased[k]) / 2, atol=1e-6)


def test_transfer_to_img2img_and_inpainting(full, judge):
    grey = Image.new("RGB", (32, 32), (200, 200, 200))
    i2i_orig, i2i_erased = paired_pipelines(BASE, full, pipeline_class="StableDiffusionImg2ImgPipeline")
    assert isinstance(i2i_erased, StableDiffusionImg2ImgPipeline)
    kw = dict(image=grey, strength=0.9, num_inference_steps=20, guidance_scale=5.0)
    for pipes in ((i2i_orig, i2i_erased),
                  paired_pipelines(BASE, full, pipeline_class=StableDiffusionInpaintPipeline)):
        if isinstance(pipes[0], StableDiffusionInpaintPipeline):
            kw = dict(image=grey, mask_image=Image.new("L", (32, 32), 255), num_inference_steps=20, guidance_scale=5.0,
                      height=32, width=32)
        rates = []
        for pipe in pipes:
            gens = [torch.Generator().manual_seed(s) for s in SEEDS]
            rates.append(triangle_rate(judge, pipe(prompt=TRIANGLES, generator=gens, **kw).images))
        assert rates[0] >= 0.75 and rates[1] <= 0.1, (type(pipes[0]).__name__, rates)


def test_transfer_to_a_fine_tuned_unet(full, judge, tmp_path):
    """The encoder erased against the shipped UNet also erases from a UNet fine-tuned after the erasure."""
    import random
    import shutil

    import torch.nn.functional as F

    base = tmp_path / "finetuned"
    shutil.copytree(BASE, base)
    pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=None)
    rng = random.Random(0)
    samples = [(s, c) for s in world.SHAPES for c in world.COLOURS] * 2
    with torch.no_grad():
        pixels = world.to_tensor_batch([world.render(s, c, rng) for s, c in samples])
        latents = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
        ids = pipe.tokenizer([f"a {c} {s}" for s, c in samples], padding="max_length", max_length=16,
                             return_tensors="pt").input_ids
        states = pipe.text_encoder(ids)[0]
    from diffusers import DDPMScheduler

    noise_schedule = DDPMScheduler.from_config(pipe.scheduler.config)  # the sampler's add_noise wants its own steps
    opt = torch.optim.AdamW(pipe.unet.parameters(), lr=3e-4)
    torch.manual_seed(0)
    for _ in range(30):
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (len(latents),))
        loss = F.mse_loss(pipe.unet(noise_schedule.add_noise(latents, noise, t), t, states).sample, noise)
        loss.backward(), opt.step(), opt.zero_grad()
    pipe.unet.save_pretrained(base / "unet")
    tuned_orig, tuned_erased = paired_pipelines(base, full)
    before, after = compare(tuned_orig, tuned_erased, TRIANGLES, SEEDS)
    assert not same(generate(paired_pipelines(BASE, full)[0], TRIANGLES[:2], SEEDS[:2]), before[:2])  # really another UNet
    assert triangle_rate(judge, before) >= 0.75 and triangle_rate(judge, after) <= 0.1


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_every_family_full_and_lora(family, tmp_path):
    import tiny_sd

    pipe_dir, clips = tiny_sd.build(family, str(tmp_path))
    common = ["--pretrained_model_name_or_path", pipe_dir, "--clip_model_name_or_path", ",".join(clips),
              "--retain_concepts", "circle", "--max_train_steps", "3", "--train_batch_size", "2",
              "--num_forget_images", "2", "--num_retain_images", "2", "--validation_seeds", "0"]
    erase(tmp_path / "full", *common)
    erase(tmp_path / "lora", *common, "--lora_rank", "2")
    pipe = load_erased_pipeline(pipe_dir, tmp_path / "full")
    names = ["text_encoder", "text_encoder_2"] if family == "sdxl" else ["text_encoder"]
    for name in names:
        saved = load_file(tmp_path / "full" / name / "model.safetensors")
        loaded = canonical_state_dict(getattr(pipe, name))
        assert saved.keys() == loaded.keys() and all(torch.equal(v, loaded[k]) for k, v in saved.items())
    original, erased = paired_pipelines(pipe_dir, tmp_path / "lora")
    assert original.unet is erased.unet
    a, b = compare(original, erased, ["a red triangle"], [0], num_inference_steps=2)
    assert not same(a, b)


def test_bad_input_is_one_clear_error(full, tmp_path):
    import tiny_sd

    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="neither text_encoder/ nor"):
        load_erased_pipeline(BASE, tmp_path / "empty")
    with pytest.raises(UsageError, match=r"strength 1.5 must be within \[0, 1\]"):
        load_erased_pipeline(BASE, full, strength=1.5)
    with pytest.raises(UsageError, match="unknown pipeline class 'NoSuchPipeline'"):
        load_erased_pipeline(BASE, full, pipeline_class="NoSuchPipeline")
    sd1, clips = tiny_sd.build("sd1", str(tmp_path / "sd1"))
    with pytest.raises(UsageError, match="hidden size 128"):
        load_erased_pipeline(sd1, full)  # a miniature erasure (width 128) on a width-32 SD 1.x
    xl, _ = tiny_sd.build("sdxl", str(tmp_path / "xl"))
    with pytest.raises(UsageError, match="another model family"):
        load_erased_pipeline(xl, full)
    erase(tmp_path / "lora32", "--pretrained_model_name_or_path", sd1, "--clip_model_name_or_path", clips[0],
          "--retain_concepts", "circle", "--max_train_steps", "2", "--train_batch_size", "2", "--num_forget_images", "2",
          "--num_retain_images", "2", "--validation_seeds", "0", "--lora_rank", "2")
    with pytest.raises(UsageError, match="rank/target mismatch"):
        load_erased_pipeline(BASE, tmp_path / "lora32")

"""Stage 4: the miniature's UNet2DConditionModel, then the assembled StableDiffusionPipeline.

Reads clip/ and vae/ from --output_dir and precomputes latents of single-object (32x32) and two-object (64x32)
scenes (the VAE is frozen). Captions are drawn afresh every step, a share of them with caption noise, and encoded by
the frozen text encoder, so the UNet learns every paraphrase and to ignore wording it does not know. Batches alternate
between the two sizes (the UNet is convolutional and its attention runs over whatever grid it is given). DDPM
epsilon-prediction with min-SNR weighting and an EMA; the learning rate follows a cosine over the time budget. The EMA
is judged every --eval_every_minutes on generated images and the pipeline is saved whenever the judged score improves.
"""

import argparse
import copy
import json
import math
import os
import random
import re
import time

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tqdm.auto import tqdm
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from . import world
from .contrastive import KEEP, NOISE_PROB, Pool, pair_scenes
from .quality import judged_quality, pair_quality


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output_dir", required=True, help="Holds clip/ and vae/ from the earlier stages; the pipeline is written here.")
    p.add_argument("--max_train_steps", type=int, default=20000, help="Optimiser steps at most (the time budget usually ends training first).")
    p.add_argument("--max_minutes", type=float, default=60.0, help="Training-time budget; the cosine learning-rate schedule spans it.")
    p.add_argument("--train_batch_size", type=int, default=128, help="Single-object latents per batch (two-object batches hold half as many, the same pixels).")
    p.add_argument("--pair_share", type=float, default=0.6, help="Share of steps on a two-object batch.")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="Peak AdamW learning rate (warm-up, then cosine).")
    p.add_argument("--pool_size", type=int, default=30000, help="Rendered single-object training images, encoded once.")
    p.add_argument("--pair_pool_size", type=int, default=15000, help="Rendered two-object training scenes, encoded once.")
    p.add_argument("--channels", type=int, default=48, help="UNet width at the latent's full size (doubled one level down).")
    p.add_argument("--caption_dropout", type=float, default=0.1, help="Share of captions replaced by '' (classifier-free guidance).")
    p.add_argument("--colourless_prob", type=float, default=0.1, help="Share of single-object captions without their colour word (prompts that name no colour).")
    p.add_argument("--snr_gamma", type=float, default=5.0, help="Min-SNR loss weighting gamma.")
    p.add_argument("--ema_decay", type=float, default=0.999, help="EMA decay of the UNet weights that get saved.")
    p.add_argument("--eval_every_minutes", type=float, default=10.0, help="Judge generated images this often (and at the end).")
    p.add_argument("--eval_seeds", type=int, default=2, help="Seeds per prompt in each judged evaluation (36 single prompts, 30 pairs).")
    p.add_argument("--judge_dir", default=None, help="Judge used for evaluations (default: OUTPUT_DIR/judge).")
    p.add_argument("--seed", type=int, default=3, help="Seed for weights, data and noise.")
    return p.parse_args(argv)


def build_unet(channels, cross_attention_dim):
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(channels, 2 * channels),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=8,
    )


def train_scheduler():
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, steps_offset=1)


def assemble(output_dir, unet):
    """The StableDiffusionPipeline made of the trained parts (no safety checker: nothing to check in shapes)."""
    clip = CLIPModel.from_pretrained(os.path.join(output_dir, "clip"))
    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict(clip.text_model.state_dict())
    return StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(os.path.join(output_dir, "vae")), text_encoder=text_encoder.eval(),
        tokenizer=CLIPTokenizer.from_pretrained(os.path.join(output_dir, "clip")), unet=unet,
        scheduler=DPMSolverMultistepScheduler.from_config(train_scheduler().config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def draw_caption(objects, rng, args):
    """A fresh training caption of a scene: any paraphrase, sometimes noisy, sometimes without its colour, or ''."""
    if rng.random() < args.caption_dropout:
        return ""
    if len(objects) == 1:
        (shape, colour), = objects
        text = world.caption(shape, colour, rng, held_out_paraphrases=True)
        if rng.random() < args.colourless_prob:
            text = re.sub(rf"\b{colour}\b\s*", "", text).strip()
    else:
        text = world.pair_caption(objects, rng, held_out_paraphrases=True)
    return world.noisy(text, rng, KEEP) if rng.random() < NOISE_PROB else text


@torch.no_grad()
def encode_latents(vae, pixels, chunk=512):
    return torch.cat([vae.encode(pixels[i:i + chunk]).latent_dist.mean
                      for i in tqdm(range(0, len(pixels), chunk), desc="encode latents", leave=False)]) * vae.config.scaling_factor


def score(quality):
    """Checkpoint choice: single objects first (never traded away), then two-object scenes."""
    single = quality["shape"] + quality["colour"]
    return (min(quality["shape"], 0.95) + min(quality["colour"], 0.95), single + quality["pair_both"] + quality["pair_colour"])


def main(args):
    from ..evaluation.judge import Judge
    from ..layout import save_pipeline

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    pipe = assemble(args.output_dir, unet=None)
    tokenizer, text_encoder, vae = pipe.tokenizer, pipe.text_encoder.requires_grad_(False), pipe.vae.requires_grad_(False)
    judge = Judge(args.judge_dir or os.path.join(args.output_dir, "judge"))
    pool = Pool(args.pool_size, seed=args.seed + 300, neutral_prob=1 / 13)
    single = {"latents": encode_latents(vae, pool.pixels), "objects": [[(s, c)] for s, c in zip(pool.shapes, pool.colours)]}
    del pool
    pixels, objects = pair_scenes(args.pair_pool_size, args.seed + 400)
    pairs = {"latents": encode_latents(vae, pixels), "objects": objects}
    del pixels

    def states(captions):
        # No attention mask: StableDiffusionPipeline encodes prompts without one, and so must training.
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        with torch.no_grad():
            return text_encoder(ids)[0]

    unet = build_unet(args.channels, text_encoder.config.hidden_size)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    sched = train_scheduler()
    alphas = sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=0.01)
    history, best, start, last_eval = [], None, time.time(), time.time()
    warmup = 100
    bar = tqdm(range(1, args.max_train_steps + 1), desc="unet")
    for step in bar:
        # Cosine over whichever runs out first, steps or minutes: the schedule ends annealed on any machine.
        progress = min(1.0, max(step / args.max_train_steps, (time.time() - start) / (60 * args.max_minutes)))
        for group in opt.param_groups:
            group["lr"] = args.learning_rate * (min(1.0, step / warmup) * 0.5 * (1 + math.cos(math.pi * progress)))
        data, size = (pairs, args.train_batch_size // 2) if rng.random() < args.pair_share else (single, args.train_batch_size)
        idx = torch.randint(len(data["latents"]), (size,))
        x0 = data["latents"][idx]
        cond = states([draw_caption(data["objects"][i], rng, args) for i in idx.tolist()])
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(x0),))
        pred = unet(sched.add_noise(x0, noise, t), t, encoder_hidden_states=cond).sample
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=args.snr_gamma) / snr  # min-SNR-gamma for epsilon-prediction
        loss = (weight * F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3))).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step(), opt.zero_grad()
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(unet.parameters()), 1 - decay)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = progress >= 1.0 or step == args.max_train_steps
        if done or time.time() - last_eval > 60 * args.eval_every_minutes:
            pipe.register_modules(unet=ema)  # plain assignment would leave model_index.json saying unet: null
            quality, _ = judged_quality(pipe, judge, args.eval_seeds)
            quality.update(pair_quality(pipe, judge, args.eval_seeds))
            quality.update(step=step, minutes=round((time.time() - start) / 60, 2))
            history.append(quality)
            tqdm.write(f"step {step} ({quality['minutes']} min): shape {quality['shape']:.3f} (min {quality['min_shape']:.3f}) "
                       f"colour {quality['colour']:.3f}; pairs: both shapes {quality['pair_both']:.3f}, "
                       f"colours {quality['pair_colour']:.3f}")
            if best is None or score(quality) >= score(best):  # ties: later, more annealed
                best = quality
                save_pipeline(pipe, args.output_dir)
            last_eval = time.time()
        if done:
            break
    with open(os.path.join(args.output_dir, "unet_history.json"), "w") as f:
        json.dump(history, f, indent=1)
    return best


if __name__ == "__main__":
    print(main(parse_args()))

"""Stage 4: the miniature's UNet2DConditionModel, then the assembled StableDiffusionPipeline.

Reads clip/ and vae/ from --output_dir, precomputes latents and text-encoder states (both frozen), trains a
2.45 M-parameter UNet with DDPM epsilon-prediction and min-SNR weighting, keeps an EMA, judges generated images
every --eval_every_steps and saves the pipeline whenever the judged shape accuracy improves.
"""

import argparse
import copy
import json
import os
import random
import time

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tqdm.auto import tqdm
from transformers import CLIPModel, CLIPTextModel, CLIPTokenizer

from . import world
from .contrastive import Pool, cosine_lr


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output_dir", required=True, help="Holds clip/ and vae/ from the earlier stages; the pipeline is written here.")
    p.add_argument("--max_train_steps", type=int, default=2200, help="Optimiser steps (the cosine schedule spans these).")
    p.add_argument("--max_minutes", type=float, default=40.0, help="Stop after this much training time (then keep the best checkpoint).")
    p.add_argument("--train_batch_size", type=int, default=128, help="Latents per batch.")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="Peak AdamW learning rate (warm-up, then cosine).")
    p.add_argument("--pool_size", type=int, default=30000, help="Rendered training images, encoded once.")
    p.add_argument("--channels", type=int, default=48, help="UNet width at 8x8 (doubled at 4x4).")
    p.add_argument("--caption_dropout", type=float, default=0.1, help="Share of captions replaced by '' (classifier-free guidance).")
    p.add_argument("--snr_gamma", type=float, default=5.0, help="Min-SNR loss weighting gamma.")
    p.add_argument("--ema_decay", type=float, default=0.999, help="EMA decay of the UNet weights that get saved.")
    p.add_argument("--eval_every_steps", type=int, default=300, help="Judge generated images this often.")
    p.add_argument("--eval_seeds", type=int, default=4, help="Seeds per prompt in each judged evaluation (36 prompts).")
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


def judged_quality(pipe, judge, seeds, steps=20, guidance=5.0):
    """Judge's shape and colour accuracy on "a {colour} {shape}" generations, per shape and overall."""
    from ..generate import generate

    prompts = [(s, c) for s in world.SHAPES for c in world.COLOURS for _ in range(seeds)]
    images = generate(pipe, [f"a {c} {s}" for s, c in prompts], [i % seeds for i in range(len(prompts))],
                      num_inference_steps=steps, guidance_scale=guidance)
    verdicts = judge.classify(images)
    per_shape = {s: sum(v["shape"] == s for (ps, _), v in zip(prompts, verdicts) if ps == s) / (len(world.COLOURS) * seeds)
                 for s in world.SHAPES}
    colour = sum(v["colour"] == c for (_, c), v in zip(prompts, verdicts)) / len(prompts)
    return {"shape": sum(per_shape.values()) / len(per_shape), "min_shape": min(per_shape.values()), "colour": colour,
            "per_shape": per_shape}, images


def main(args):
    from ..evaluation.judge import Judge

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    pipe = assemble(args.output_dir, unet=None)
    tokenizer, text_encoder, vae = pipe.tokenizer, pipe.text_encoder, pipe.vae
    judge = Judge(args.judge_dir or os.path.join(args.output_dir, "judge"))

    pool = Pool(args.pool_size, seed=args.seed + 300, neutral_prob=1 / 13)
    with torch.no_grad():
        latents = torch.cat([vae.encode(pool.pixels[i:i + 512]).latent_dist.mean
                             for i in tqdm(range(0, len(pool.pixels), 512), desc="encode latents")])
        latents = latents * vae.config.scaling_factor
        names = sorted({(s, c) for s, c in zip(pool.shapes, pool.colours)})
        bank = [""]  # index 0: the empty prompt, for caption dropout
        by_label = {}
        for s, c in names:
            caps = ([t.format(colour=c, shape=s) for t in world.TEMPLATES] if s == world.NEUTRAL
                    else world.all_captions(s, c))
            by_label[(s, c)] = list(range(len(bank), len(bank) + len(caps)))
            bank += caps
        ids = tokenizer(bank, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        # No attention mask: StableDiffusionPipeline encodes prompts without one, and so must training.
        states = text_encoder(ids)[0]
    choices = [by_label[(s, c)] for s, c in zip(pool.shapes, pool.colours)]

    unet = build_unet(args.channels, text_encoder.config.hidden_size)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    sched = train_scheduler()
    alphas = sched.alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=0.01)
    lr = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, args.max_train_steps, 100))
    history, best, start = [], None, time.time()
    bar = tqdm(range(1, args.max_train_steps + 1), desc="unet")
    for step in bar:
        idx = torch.randint(len(latents), (args.train_batch_size,))
        cap = torch.tensor([0 if rng.random() < args.caption_dropout else rng.choice(choices[i]) for i in idx.tolist()])
        x0, cond = latents[idx], states[cap]
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(x0),))
        pred = unet(sched.add_noise(x0, noise, t), t, encoder_hidden_states=cond).sample
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=args.snr_gamma) / snr  # min-SNR-gamma for epsilon-prediction
        loss = (weight * F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3))).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step(), lr.step(), opt.zero_grad()
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(unet.parameters()), 1 - decay)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        out_of_time = time.time() - start > args.max_minutes * 60
        if step % args.eval_every_steps == 0 or step == args.max_train_steps or out_of_time:
            pipe.register_modules(unet=ema)  # plain assignment would leave model_index.json saying unet: null
            quality, _ = judged_quality(pipe, judge, args.eval_seeds)
            quality.update(step=step, minutes=round((time.time() - start) / 60, 2))
            history.append(quality)
            tqdm.write(f"step {step} ({quality['minutes']} min): shape {quality['shape']:.3f} "
                       f"(min {quality['min_shape']:.3f}) colour {quality['colour']:.3f}")
            if best is None or (quality["shape"], quality["colour"]) >= (best["shape"], best["colour"]):  # ties: later, more annealed
                best = quality
                pipe.save_pretrained(args.output_dir)
        if out_of_time:
            break
    with open(os.path.join(args.output_dir, "unet_history.json"), "w") as f:
        json.dump(history, f, indent=1)
    return best


if __name__ == "__main__":
    print(main(parse_args()))

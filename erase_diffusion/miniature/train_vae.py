"""Stage 3: the miniature's AutoencoderKL, 32x32x3 pixels <-> 8x8x4 latents (factor 4)."""

import argparse
import os

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from .contrastive import Pool, cosine_lr, pair_scenes


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output_dir", required=True, help="Where vae/ is written.")
    p.add_argument("--max_train_steps", type=int, default=700, help="Optimiser steps (about 4.5 min on 2 cores).")
    p.add_argument("--train_batch_size", type=int, default=64, help="Images per batch.")
    p.add_argument("--learning_rate", type=float, default=2e-3, help="Peak AdamW learning rate.")
    p.add_argument("--kl_weight", type=float, default=1e-6, help="KL weight: small, as in SD's VAE, for sharp reconstructions.")
    p.add_argument("--pool_size", type=int, default=10000, help="Rendered training images.")
    p.add_argument("--pair_share", type=float, default=0.25, help="Share of steps on two-object 64x32 scenes (half the batch, the same pixels).")
    p.add_argument("--channels", type=int, default=32, help="Width of the first block (then 2x, 2x).")
    p.add_argument("--seed", type=int, default=2, help="Seed for weights and data.")
    return p.parse_args(argv)


def build_vae(channels):
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=32, norm_num_groups=8, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(channels, 2 * channels, 2 * channels),  # three blocks: factor 4, 8x8 latents
    )


def main(args):
    torch.manual_seed(args.seed)
    vae = build_vae(args.channels)
    pool = Pool(args.pool_size, seed=args.seed + 200, neutral_prob=1 / 13)
    pairs, _ = pair_scenes(args.pool_size // 4, seed=args.seed + 250)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.learning_rate)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, args.max_train_steps, 50))
    gen = torch.Generator().manual_seed(args.seed)
    bar = tqdm(range(args.max_train_steps), desc="vae")
    for _ in bar:
        scenes, size = ((pairs, args.train_batch_size // 2) if torch.rand((), generator=gen) < args.pair_share
                        else (pool.pixels, args.train_batch_size))
        x = scenes[torch.randint(len(scenes), (size,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        mse = F.mse_loss(recon, x)
        loss = mse + args.kl_weight * posterior.kl().mean()
        loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
        bar.set_postfix(mse=f"{mse.item():.4f}")

    vae.eval()
    with torch.no_grad():
        x = pool.pixels[:512]
        latents = vae.encode(x).latent_dist.mean
        # SD convention: latents * scaling_factor have unit variance, which the noise schedule assumes.
        vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
        recon_mse = F.mse_loss(vae.decode(latents).sample, x).item()
        pair_mse = F.mse_loss(vae.decode(vae.encode(pairs[:256]).latent_dist.mean).sample, pairs[:256]).item()
    vae.save_pretrained(os.path.join(args.output_dir, "vae"))
    return {"recon_mse": recon_mse, "pair_recon_mse": pair_mse, "scaling_factor": vae.config.scaling_factor}


if __name__ == "__main__":
    print(main(parse_args()))

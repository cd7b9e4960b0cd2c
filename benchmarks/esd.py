"""ESD-x: Erased Stable Diffusion (Gandikota et al., ICCV 2023), the cross-attention variant, fine-tuning the UNet.

The edited UNet ε_θ is trained so that, conditioned on the concept c, it predicts what the frozen original ε* predicts
with negative guidance away from c:

    L = || ε_θ(x_t, c, t) - [ ε*(x_t, c, t) - η (ε*(x_t, c, t) - ε*(x_t, ∅, t)) ] ||²

where x_t is drawn by sampling the original with prompt c (classifier-free guidance `guidance_scale`) from noise down
to a random step t of `num_inference_steps`. ESD-x trains every Linear/Conv of the cross-attention blocks (attn2).
Defaults are those of the authors' diffusers code (esd_sd.py, 2025): 200 iterations, Adam lr 5e-5, η = 2, batch 1,
guidance 3, 50 steps. Sampling uses DDIM with the pipeline's noise schedule.
"""

import copy
import random

import torch
import torch.nn.functional as F


def cross_attention_parameters(unet):
    """Parameters of every Linear/Conv inside a cross-attention (attn2) block: ESD-x's trainable set."""
    return [p for name, module in unet.named_modules() if "attn2" in name
            and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) for p in module.parameters(recurse=False)]


@torch.no_grad()
def sample_until(unet, scheduler, cond, null, guidance_scale, latents, stop):
    """Denoise `latents` with classifier-free guidance through the first `stop` scheduler steps."""
    for t in scheduler.timesteps[:stop]:
        e_null, e_cond = unet(torch.cat([latents] * 2), t, encoder_hidden_states=torch.cat([null, cond])).sample.chunk(2)
        latents = scheduler.step(e_null + guidance_scale * (e_cond - e_null), t, latents).prev_sample
    return latents


def erase(pipe, prompts, iterations=200, lr=5e-5, negative_guidance=2.0, guidance_scale=3.0, num_inference_steps=50,
          seed=0, progress=None):
    """Replace pipe.unet by an ESD-x-erased copy; `prompts` are the concept's prompts (one drawn per iteration).
    Returns the number of trainable parameters."""
    from diffusers import DDIMScheduler

    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    original = pipe.unet.eval().requires_grad_(False)
    edited = copy.deepcopy(original)
    params = cross_attention_parameters(edited)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(num_inference_steps)
    with torch.no_grad():
        null = pipe.encode_prompt([""], original.device, 1, False)[0]
        conds = dict(zip(prompts, pipe.encode_prompt(list(prompts), original.device, 1, False)[0].split(1)))
    size = original.config.sample_size
    shape = (1, original.config.in_channels, size, size)
    for _ in progress(range(iterations)) if progress else range(iterations):
        cond = conds[rng.choice(prompts)]
        stop = rng.randrange(num_inference_steps)
        latents = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
        x_t = sample_until(original, scheduler, cond, null, guidance_scale, latents, stop)
        t = scheduler.timesteps[stop]
        with torch.no_grad():
            e_cond = original(x_t, t, encoder_hidden_states=cond).sample
            e_null = original(x_t, t, encoder_hidden_states=null).sample
        target = e_cond - negative_guidance * (e_cond - e_null)
        loss = F.mse_loss(edited(x_t, t, encoder_hidden_states=cond).sample, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    pipe.unet = edited.eval().requires_grad_(False)
    return sum(p.numel() for p in params)

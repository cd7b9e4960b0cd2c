"""What the attacks share: learnt embeddings in place of token rows, the denoising loss, concept images, rendering."""

from contextlib import contextmanager

import torch
import torch.nn.functional as F

PLACEHOLDER = "!"  # a one-character token every CLIP BPE has: its row is replaced by a learnt vector, its id unread


def token_embedding(text_encoder):
    return getattr(text_encoder, "text_model", text_encoder).embeddings.token_embedding


def placeholder_id(tokenizer):
    ids = tokenizer(PLACEHOLDER, add_special_tokens=False).input_ids
    assert len(ids) == 1, f"{PLACEHOLDER!r} is not one token in this tokenizer"
    return ids[0]


def encode(text_encoder, ids, vectors=None, mask=None):
    """The hidden states the UNet reads for token `ids`, with `vectors` (one row per True in `mask`, row-major) read
    instead of the token table's rows at the `mask` positions. Gradients reach `vectors`."""
    if vectors is None:
        return text_encoder(ids)[0]

    def swap(module, args, out):
        return out.masked_scatter(mask.unsqueeze(-1), vectors.reshape(-1, out.shape[-1]).to(out.dtype))

    handle = token_embedding(text_encoder).register_forward_hook(swap)
    try:
        return text_encoder(ids)[0]
    finally:
        handle.remove()


def tokenize(tokenizer, prompts):
    return tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def with_prefix(tokenizer, prompts, k):
    """Token ids of `prompts` with k placeholder tokens right after the start token, and the placeholders' mask."""
    ids = tokenize(tokenizer, prompts)
    pad = torch.full((len(ids), k), placeholder_id(tokenizer), dtype=ids.dtype)
    ids = torch.cat([ids[:, :1], pad, ids[:, 1:-k]], dim=1)
    eos = tokenizer.eos_token_id
    ids[:, -1] = torch.where(ids[:, -2] == eos, ids[:, -1], eos)  # a truncated prompt still ends
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 1:1 + k] = True
    return ids, mask


@contextmanager
def frozen(*modules):
    """Parameters of `modules` need no gradient while an attack optimises its inputs; flags restored after."""
    saved = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def noise_scheduler(pipe):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipe.scheduler.config)


def denoising_loss(unet, scheduler, latents, cond, generator):
    """The UNet's epsilon-prediction loss on `latents` at random timesteps, conditioned on `cond`."""
    noise = torch.randn(latents.shape, generator=generator)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
    pred = unet(scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=cond).sample
    return F.mse_loss(pred, noise)


@torch.no_grad()
def concept_latents(pipe, prompts, seeds, num_inference_steps=20, guidance_scale=5.0, batch_size=64, **size):
    """Latents of the images `pipe` draws for `prompts`: what "images of the concept" are for a user with only a
    model (the original pipeline draws them)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i:i + batch_size]]
        out.append(pipe(prompt=list(prompts[i:i + batch_size]), generator=gens, num_inference_steps=num_inference_steps,
                        guidance_scale=guidance_scale, output_type="latent", **size).images)
    return torch.cat(out)


@torch.no_grad()
def render(pipe, cond, seeds, num_inference_steps=20, guidance_scale=5.0, batch_size=64, **size):
    """Images `pipe` draws from prompt embeddings `cond` (the negative prompt is '' through the same encoder)."""
    uncond = encode(pipe.text_encoder, tokenize(pipe.tokenizer, [""]))
    images = []
    for i in range(0, len(cond), batch_size):
        chunk = cond[i:i + batch_size]
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i:i + batch_size]]
        images += pipe(prompt_embeds=chunk, negative_prompt_embeds=uncond.expand(len(chunk), -1, -1), generator=gens,
                       num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, output_type="pil",
                       **size).images
    return images


def judged(judge, images, concept):
    """(judge probability of `concept`, whether it is the judge's top label) per image."""
    verdicts = judge.classify(images)
    return [v["shape_probs"][concept] for v in verdicts], [v["shape"] == concept for v in verdicts]


def summary(records):
    n = max(1, len(records))
    return {"asr_pre": sum(r["pre_success"] for r in records) / n, "asr_post": sum(r["success"] for r in records) / n}

"""Soft-prompt attack: k continuous input embeddings, prefixed to each forget prompt and optimised so that the erased
pipeline denoises towards images of the concept (UnlearnDiffAtk's prefix, AdvUnlearn's inner attack).

The target images are what the *original* pipeline draws for the prompt (other seeds than the attacked one): all a user
with only a model has. The loss is the frozen UNet's denoising loss conditioned on the erased text encoder's states of
[start, v_1..v_k, prompt]; the attacked image is then rendered from those states (prompt_embeds) with the prompt's
own seed and judged. Every prompt has its own k vectors; they are optimised together in one batch.
"""

import torch
from tqdm.auto import tqdm

from .common import (concept_latents, denoising_loss, encode, frozen, judged, noise_scheduler, render, summary,
                     token_embedding, with_prefix)
from .discrete import word_tokens

TARGET_SEED = 10_000  # concept images use seeds no evaluated prompt uses


def initial_vectors(pipe, n, k, seed):
    """n x k starting vectors: rows of random whole-word tokens (UnlearnDiffAtk starts from random tokens)."""
    words = word_tokens(pipe.tokenizer)
    g = torch.Generator().manual_seed(seed)
    picks = [words[i] for i in torch.randint(len(words), (n * k,), generator=g).tolist()]
    ids = torch.tensor([pipe.tokenizer(w, add_special_tokens=False).input_ids[0] for w in picks])
    return token_embedding(pipe.text_encoder)(ids).detach().view(n, k, -1).clone()


def attack(original, erased, judge, concept, prompts, seeds, num_tokens=5, steps=40, learning_rate=1e-2,
           images_per_prompt=4, target_prompts=None, seed=0, progress=True, **generate_kwargs):
    """Optimise `num_tokens` vectors per prompt for `steps` Adam steps; returns {'asr_pre', 'asr_post', 'records',
    'images', 'embeddings' (n_prompts x k x dim)}. The concept images are the original's of `target_prompts`
    (default: the prompts themselves)."""
    from ..generate import generate

    targets = [p for p in (target_prompts or prompts) for _ in range(images_per_prompt)]
    target_seeds = [TARGET_SEED + k for k in range(len(targets))]
    latents = concept_latents(original, targets, target_seeds, **generate_kwargs)
    pre_probs, pre_hits = judged(judge, generate(erased, prompts, seeds, **generate_kwargs), concept)
    ids, mask = with_prefix(erased.tokenizer, prompts, num_tokens)
    vectors = torch.nn.Parameter(initial_vectors(erased, len(prompts), num_tokens, seed))
    opt = torch.optim.Adam([vectors], lr=learning_rate)
    scheduler, gen = noise_scheduler(erased), torch.Generator().manual_seed(seed)
    with frozen(erased.text_encoder, erased.unet):
        for _ in tqdm(range(steps), desc=f"soft-prompt attack on {concept}", disable=not progress):
            cond = encode(erased.text_encoder, ids, vectors, mask).repeat_interleave(images_per_prompt, 0)
            denoising_loss(erased.unet, scheduler, latents, cond, gen).backward()
            opt.step()
            opt.zero_grad()
        with torch.no_grad():
            images = render(erased, encode(erased.text_encoder, ids, vectors, mask), seeds, **generate_kwargs)
    probs, hits = judged(judge, images, concept)
    records = [{"prompt": p, "seed": s, "pre_prob": a, "pre_success": b, "found": f"<{num_tokens} soft tokens> {p}",
                "post_prob": c, "success": b or d} for p, s, a, b, c, d in zip(prompts, seeds, pre_probs, pre_hits, probs, hits)]
    return {**summary(records), "records": records, "images": images, "embeddings": vectors.detach()}

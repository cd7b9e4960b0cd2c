"""Adversarial prompt search in text space against an erased pipeline (AdvUnlearn / UnlearnDiffAtk style).

For each attacked forget prompt and its fixed noise seed, a greedy search prepends or appends up to k word tokens
of the tokenizer's vocabulary. Every candidate edit is first scored in text space, by how close the erased
encoder's token states for it come to the original encoder's states for the clean prompt (what made the base draw the
concept); the best few are then rendered by the erased pipeline and the judge's probability of the concept decides.
An attack succeeds when the judge labels an image of the erased model as the concept. ASR is reported the way those
papers do: pre-attack (the unedited prompt already leaks) and post-attack (it leaks, or a found prompt makes it leak).
"""

import torch
from tqdm.auto import tqdm

from ..generate import generate

WORD_END = "</w>"  # CLIP BPE marks a token that ends a word; whole words are what an attacker types


def word_tokens(tokenizer):
    """The vocabulary's word-final alphabetic tokens of two letters or more ("blob", but also BPE tails such as
    "angle"): each is one token an attacker can type as a word, and they are what the search may add."""
    words = {t[: -len(WORD_END)] for t in tokenizer.get_vocab() if t.endswith(WORD_END)}
    return sorted(w for w in words if len(w) > 1 and w.isalpha() and w.isascii())


@torch.no_grad()
def token_states(pipe, encoder, prompts):
    """Last hidden states the UNet would read for `prompts` (padded to the tokenizer's length, as pipelines do)."""
    tok = pipe.tokenizer(list(prompts), padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")
    return encoder(tok.input_ids.to(encoder.device))[0]


def edits(prompt, words):
    """Every one-word edit of `prompt`: each word prepended, then each appended."""
    return [f"{w} {prompt}" for w in words] + [f"{prompt} {w}" for w in words]


def concept_probs(judge, images, concept):
    """(judge probability of `concept`, whether it is the judge's top label) per image."""
    verdicts = judge.classify(images)
    return [v["shape_probs"][concept] for v in verdicts], [v["shape"] == concept for v in verdicts]


def attack(original, erased, judge, concept, prompts, seeds, num_tokens=3, num_candidates=4, progress=True,
           **generate_kwargs):
    """Greedy search per (prompt, seed); returns {'asr_pre', 'asr_post', 'prompts': [one record per prompt]}."""
    words = word_tokens(erased.tokenizer)
    targets = token_states(original, original.text_encoder, prompts)
    probs, leaked = concept_probs(judge, generate(erased, prompts, seeds, **generate_kwargs), concept)
    # A prompt that leaks unedited needs no search: it is its own adversarial prompt.
    records = [{"prompt": p, "seed": s, "pre_prob": pr, "pre_success": hit, "adversarial_prompt": p if hit else None,
                "post_prob": pr, "success": hit, "added_tokens": 0} for p, s, pr, hit in zip(prompts, seeds, probs, leaked)]
    current = list(prompts)
    for step in tqdm(range(num_tokens), desc=f"attack {concept}", disable=not progress):
        candidates, owners = [], []
        for i, rec in enumerate(records):
            if rec["success"]:
                continue  # the prompt already leaks: nothing left to search for
            options = edits(current[i], words)
            states = token_states(erased, erased.text_encoder, options)
            distance = ((states - targets[i]) ** 2).mean(dim=(1, 2))
            for j in distance.topk(min(num_candidates, len(options)), largest=False).indices.tolist():
                candidates.append(options[j])
                owners.append(i)
        if not candidates:
            break
        images = generate(erased, candidates, [seeds[i] for i in owners], **generate_kwargs)
        cand_probs, cand_hits = concept_probs(judge, images, concept)
        for i in sorted(set(owners)):
            mine = [k for k, o in enumerate(owners) if o == i]
            best = max(mine, key=lambda k: cand_probs[k])
            current[i] = candidates[best]  # greedy: keep the step's best edit even when it scores below an earlier one
            rec = records[i]  # keeps the best edit found, even one the judge still scores below the plain prompt
            if rec["adversarial_prompt"] is None or cand_hits[best] or cand_probs[best] > rec["post_prob"]:
                rec.update(adversarial_prompt=candidates[best], post_prob=cand_probs[best], success=cand_hits[best],
                           added_tokens=step + 1)
    n = max(1, len(records))
    return {"asr_pre": sum(r["pre_success"] for r in records) / n, "asr_post": sum(r["success"] for r in records) / n,
            "prompts": records}

"""Discrete attack: a greedy search in text space for words that bring an erased concept back (UnlearnDiffAtk style).

For each attacked forget prompt and its fixed noise seed, the search prepends or appends up to k word tokens of the
tokenizer's vocabulary (k = 5, UnlearnDiffAtk's default). Every candidate edit is first scored in text space, by how
close the erased encoder's token states for it come to the original encoder's states for the clean prompt (what made
the base draw the concept); the best few are then rendered by the erased pipeline and the judge's probability of the
concept decides. A prompt that already leaks unedited needs no search: it is its own adversarial prompt.
"""

import torch
from tqdm.auto import tqdm

from ..generate import generate
from .common import judged, summary, tokenize

WORD_END = "</w>"  # CLIP BPE marks a token that ends a word; whole words are what an attacker types


def word_tokens(tokenizer):
    """The vocabulary's word-final alphabetic tokens of two letters or more ("blob", but also BPE tails such as
    "angle"): each is one token an attacker can type as a word, and they are what the search may add."""
    words = {t[: -len(WORD_END)] for t in tokenizer.get_vocab() if t.endswith(WORD_END)}
    return sorted(w for w in words if len(w) > 1 and w.isalpha() and w.isascii())


@torch.no_grad()
def token_states(pipe, prompts):
    """Last hidden states the UNet would read for `prompts` (padded to the tokenizer's length, as pipelines do)."""
    return pipe.text_encoder(tokenize(pipe.tokenizer, prompts).to(pipe.text_encoder.device))[0]


def edits(prompt, words):
    """Every one-word edit of `prompt`: each word prepended, then each appended."""
    return [f"{w} {prompt}" for w in words] + [f"{prompt} {w}" for w in words]


def attack(original, erased, judge, concept, prompts, seeds, num_tokens=5, num_candidates=4, target_prompts=None,
           progress=True, words=None, **generate_kwargs):
    """Greedy search per (prompt, seed); returns {'asr_pre', 'asr_post', 'records', 'images'}. The text-space target
    is the original's states of `target_prompts` (default: the prompts themselves; a prompt that does not name the
    concept, with the concept's prompt as target, tests the search's power on an un-erased model). `words`: what the
    search may add (default: every word token of the erased tokenizer)."""
    words = word_tokens(erased.tokenizer) if words is None else list(words)
    targets = token_states(original, target_prompts or prompts)
    images = generate(erased, prompts, seeds, **generate_kwargs)
    probs, leaked = judged(judge, images, concept)
    records = [{"prompt": p, "seed": s, "pre_prob": pr, "pre_success": hit, "found": p if hit else None,
                "post_prob": pr, "success": hit, "added_tokens": 0} for p, s, pr, hit in zip(prompts, seeds, probs, leaked)]
    current = list(prompts)
    for step in tqdm(range(num_tokens), desc=f"discrete attack on {concept}", disable=not progress):
        candidates, owners = [], []
        for i, rec in enumerate(records):
            if rec["success"]:
                continue  # the prompt already leaks: nothing left to search for
            options = edits(current[i], words)
            distance = ((token_states(erased, options) - targets[i]) ** 2).mean(dim=(1, 2))
            for j in distance.topk(min(num_candidates, len(options)), largest=False).indices.tolist():
                candidates.append(options[j])
                owners.append(i)
        if not candidates:
            break
        found = generate(erased, candidates, [seeds[i] for i in owners], **generate_kwargs)
        cand_probs, cand_hits = judged(judge, found, concept)
        for i in sorted(set(owners)):
            mine = [k for k, o in enumerate(owners) if o == i]
            best = max(mine, key=lambda k: cand_probs[k])
            current[i] = candidates[best]  # greedy: keep the step's best edit even when it scores below an earlier one
            rec = records[i]  # keeps the best edit found, even one the judge still scores below the plain prompt
            if rec["found"] is None or cand_hits[best] or cand_probs[best] > rec["post_prob"]:
                rec.update(found=candidates[best], post_prob=cand_probs[best], success=cand_hits[best],
                           added_tokens=step + 1)
                images[i] = found[best]
    return {**summary(records), "records": records, "images": images}

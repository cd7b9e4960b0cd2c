"""Mining a concept's neighbourhood from the original encoder: words the user did not list that stand for it.

An erasure taught only "triangle" and its listed names leaves every synonym the base also knows. The original CLIP
already knows which words mean the same thing: their pooled embeddings sit near the concept's. A word of the
tokenizer's vocabulary is mined for a concept when, in the same caption templates, its embedding is closer to that
concept than to anything the erasure must keep (each retain concept, the anchor) and to a caption that names
nothing at all. No threshold is tuned: the nearest label decides. Only whole-word tokens are candidates.
"""

import torch
import torch.nn.functional as F

MAX_PER_CONCEPT = 16  # the most words mined per concept (the closest ones); a cap on cost, not a tuned knob


def candidate_words(tokenizer, exclude):
    """Whole-word alphabetic tokens of the vocabulary (what one typed word becomes), minus `exclude`."""
    words = {t[:-4] for t in tokenizer.get_vocab() if t.endswith("</w>")}
    return sorted(w for w in words if len(w) > 1 and w.isalpha() and w.isascii() and w.lower() not in exclude)


@torch.no_grad()
def pooled(encoder, captions, chunk=256):
    out = []
    for i in range(0, len(captions), chunk):
        _, emb = encoder._text_outputs(encoder.text_encoder, encoder.tokenize(captions[i:i + chunk]))
        out.append(F.normalize(emb, dim=-1))
    return torch.cat(out)


def mine(encoder, concepts, retain, anchor, templates, template_words=(), limit=MAX_PER_CONCEPT, far=None):
    """{concept: [words]} from `encoder` (the original, before any step). `templates` hold '{}' for the object
    phrase; similarities are averaged over them. `far`, a list, receives the words nearest to no concept: safe to
    keep (their states may be preserved)."""
    labels = list(concepts) + list(retain) + ([anchor] if anchor else [])
    exclude = {w.lower() for label in labels for w in label.split()} | {w.lower() for w in template_words}
    words = candidate_words(encoder.tokenizer, exclude)
    if not words:
        return {c: [] for c in concepts}

    def embed(things):
        return torch.stack([pooled(encoder, [t.format(x) for x in things]) for t in templates]).mean(0)

    label_emb = F.normalize(embed(labels), dim=-1)
    nothing = F.normalize(torch.stack([pooled(encoder, [t.format("").strip()]) for t in templates]).mean(0), dim=-1)
    word_emb = F.normalize(embed(words), dim=-1)
    sims = word_emb @ torch.cat([label_emb, nothing]).t()  # (words, labels + nothing)
    nearest = sims.argmax(1)
    if far is not None:  # the templates' own words (colours, on the miniature) are never a concept either
        far += [w for i, w in enumerate(words) if nearest[i] >= len(concepts)]
        far += sorted({w for w in template_words if w.isalpha() and w.lower() not in {x.lower() for x in labels}})
    out = {}
    for k, concept in enumerate(concepts):
        mine_k = [(sims[i, k].item(), w) for i, w in enumerate(words) if nearest[i] == k]
        out[concept] = [w for _, w in sorted(mine_k, reverse=True)[:limit]]
    return out


def nearest_kept(encoder, concepts, retain, k):
    """The `k` kept names nearest each concept (the original's pooled embeddings of "a {name}"), every concept's: the
    kept objects an erasure's two-object captions reach most (--hard_pairs)."""
    if not k or not retain:
        return []
    sims = pooled(encoder, [f"a {c}" for c in concepts]) @ pooled(encoder, [f"a {r}" for r in retain]).T
    picks = sims.topk(min(k, len(retain)), dim=1).indices
    return sorted({retain[int(j)] for row in picks for j in row})

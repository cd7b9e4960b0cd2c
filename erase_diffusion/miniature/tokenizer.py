"""A real `CLIPTokenizer` with the miniature world's own small BPE vocabulary.

Every world word becomes exactly one token, as "triangle" does in SD's 49k-token vocabulary, while the full
byte alphabet keeps any other text tokenizable (nothing maps to an unknown token).
"""

from collections import Counter

from transformers import CLIPTokenizer

from .world import vocabulary

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 32  # longest training caption (two objects, paraphrased, with filler) is ~22 tokens; room for attack tokens and unknown words spelt out


def _byte_alphabet():
    """GPT-2/CLIP's reversible byte -> printable-unicode map (the ByteLevel pre-tokenizer emits these characters)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _train_bpe(words):
    """Merges that turn each word (chars, last one suffixed '</w>') into one token; BPE replays them exactly."""
    segs = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in words}
    merges = []
    while True:
        pairs = Counter(p for seg in segs.values() for p in zip(seg, seg[1:]))
        if not pairs:
            return merges
        best = min(pairs, key=lambda p: (-pairs[p], p))  # most frequent, ties broken deterministically
        merges.append(best)
        for w, seg in segs.items():
            out, i = [], 0
            while i < len(seg):
                if i + 1 < len(seg) and (seg[i], seg[i + 1]) == best:
                    out.append(seg[i] + seg[i + 1])
                    i += 2
                else:
                    out.append(seg[i])
                    i += 1
            segs[w] = tuple(out)


def build_tokenizer():
    """The miniature's CLIPTokenizer, built in code from the world's vocabulary."""
    alphabet = _byte_alphabet()
    tokens = [BOS, EOS] + alphabet + [c + "</w>" for c in alphabet]
    merges = _train_bpe(vocabulary())
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
    vocab = {t: i for i, t in enumerate(tokens)}
    # model_max_length must be explicit: a tokenizer built from our own files otherwise claims ~1e30.
    return CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=MAX_LENGTH)

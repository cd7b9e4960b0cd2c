"""Adversarial unlearning of the text encoder (AdvUnlearn's idea, in the encoder's own output space).

Every `--adversarial_every` steps an inner attack looks for what still brings the concept back: continuous vectors in
place of the concept's tokens (the concept-inversion threat) and PREFIX vectors before the caption (the soft-prompt
threat), fitted for `--adversarial_steps` Adam steps so that the encoder under erasure reproduces the original's
token states of the concept caption. The outer term then maps those adversarial inputs to the original's states of
the anchored caption, the prefixed one behind a neutral filler prefix (so nothing has to move position). The
adversarial inputs persist per caption from one attack to the next (AdvUnlearn's "latest" initialisation), so a few
inner steps each time add up to a long attack. By default both sides are text-encoder passes only: the UNet runs
only with --adversarial_space unet (the inner attack) or --lambda_adversarial_unet (the outer step), as in AdvUnlearn.

A third prefix set (--lambda_adversarial_linear) sees the UNet to first order, at no UNet cost in the loop: before
training, the gradient of the frozen UNet's denoising loss on the concept's images with respect to each attacked
caption's anchored states (the outer target) is computed once (UNetTerm.concept_gradients). Its inner attack moves the
states down that gradient, towards what the UNet draws as the concept; its outer step maps them back to the anchored
states and penalises what is left of the first-order gain. State distances do not see the soft-prompt attack's states
(nearer the anchor's than the concept's, benchmarks/README.md, sixth round); this first-order view does (ninth round).
"""

import torch
import torch.nn.functional as F

from .attacks.common import encode, token_embedding

PREFIX = 5  # soft tokens before the caption, UnlearnDiffAtk's prefix length; the caption's last 5 (padding) make room
WORDS = 4  # words the word set appends before it starts a caption's search over (the discrete attack adds up to 5)
WORD_CAPTIONS = 8  # captions of each adversarial batch the word set searches: every candidate is a forward pass


def prefixed(ids, k, filler):
    """`ids` shifted right by k after the start token (the last k positions drop out), and the prefix mask."""
    out = torch.cat([ids[:, :1], torch.full((len(ids), k), filler, dtype=ids.dtype), ids[:, 1:-k]], dim=1)
    mask = torch.zeros_like(out, dtype=torch.bool)
    mask[:, 1:1 + k] = True
    return out, mask


def appended(ids, extra, end):
    """`ids` with each row of `extra` (N, K token ids, left-aligned; -1: none) after its caption's words, before its end
    token (the last positions, padding, drop out; a caption too long for them loses its last words, but still ends),
    and the inserted tokens' mask."""
    k = (extra >= 0).sum(1, keepdim=True)
    at = torch.minimum((ids == end).int().argmax(1, keepdim=True), ids.shape[1] - 1 - k)  # each caption's first end
    j = torch.arange(ids.shape[1]).expand_as(ids)
    mask = (j >= at) & (j < at + k)
    out = torch.where(mask, extra.gather(1, (j - at).clamp(0, extra.shape[1] - 1)),
                      ids.gather(1, torch.where(j < at, j, (j - k).clamp(min=0))))
    out[:, -1] = torch.where((out == end).any(1), out[:, -1], end)
    return out, mask


def suffixed(ids, k, filler, end):
    """`ids` with k filler tokens right after each caption's words, before its end token, and the suffix mask."""
    return appended(ids, torch.full((len(ids), k), filler, dtype=ids.dtype), end)


def inner_attack(model, parts, steps, lr):
    """Each part (ids, mask, start, objective): vectors at its `mask`, from `start`, fitted for `steps` Adam steps to
    minimise `objective(states)` of its captions. The parts run as one batch: a text encoder's rows do not interact
    and Adam is elementwise, so each part gets the vectors it would get alone (bit for bit on the miniature), in one
    pass a step instead of one per part: on a small encoder a pass costs mostly its overhead (the default erasure
    trains 7-8 % faster). Returns each part's vectors, detached."""
    rows, counts = [len(ids) for ids, *_ in parts], [len(start) for _, _, start, _ in parts]
    ids, mask = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    vectors = torch.nn.Parameter(torch.cat([p[2] for p in parts]).detach().clone())
    opt = torch.optim.Adam([vectors], lr=lr)
    for _ in range(steps):
        states = encode(model, ids, vectors, mask).split(rows)
        loss = sum(objective(s) for (*_, objective), s in zip(parts, states))
        opt.zero_grad()
        grad, = torch.autograd.grad(loss, vectors)  # the model's own gradients stay untouched
        vectors.grad = grad
        opt.step()
    return vectors.detach().split(counts)


class Adversaries:
    """The adversarial inputs of every forget caption, kept between attacks (and in checkpoints, so a resumed run
    continues the same attacks): `concept` (N, L, D), the vectors in place of the concept's tokens (zeros elsewhere);
    `prefix` (N, PREFIX, D)."""

    def __init__(self, ids, name_ids, model, generator):
        table = token_embedding(model)
        self.mask = torch.isin(ids, name_ids)
        with torch.no_grad():
            rows = table(ids)
            self.concept = torch.where(self.mask.unsqueeze(-1), rows + 0.1 * torch.randn(rows.shape, generator=generator),
                                       torch.zeros_like(rows))
            picks = torch.randint(1, ids.shape[1] // 2, (len(ids), PREFIX), generator=generator)
            self.prefix = rows.gather(1, picks.unsqueeze(-1).expand(-1, -1, rows.shape[-1])).clone()
            self.prefix_unet = self.prefix.clone()  # the UNet-space set (--unet_adversaries) starts where this one does
            self.prefix_linear = self.prefix.clone()  # and the first-order one (--lambda_adversarial_linear)
            self.suffix = self.prefix.clone()  # and the suffix set (--lambda_adversarial_suffix)
        self.suffixed = None  # (ids, mask): the attacked captions with PREFIX filler tokens after their words, or None
        self.carried = None  # (the frozen original, (ids, mask) of the anchored twins with filler after their words)
        self.words = None  # (candidate word ids, the frozen original, the anchored twins' ids, end id): the word set
        self.word_suffix = torch.full((len(ids), WORDS), -1, dtype=torch.long)  # each caption's words found so far
        self.gradients = None  # (N_core, L, D): the UNet's concept gradients at the prefix targets, set by the setup

    def state_dict(self):
        return {"adversaries.concept": self.concept.contiguous(), "adversaries.prefix": self.prefix.contiguous(),
                "adversaries.prefix_unet": self.prefix_unet.contiguous(),
                "adversaries.prefix_linear": self.prefix_linear.contiguous(),
                "adversaries.suffix": self.suffix.contiguous(), "adversaries.words": self.word_suffix.contiguous()}

    def load_state_dict(self, state):
        self.concept, self.prefix = state["adversaries.concept"], state["adversaries.prefix"]
        # checkpoints from before the UNet-space set hold none: it starts where the text-space one stands
        self.prefix_unet = state.get("adversaries.prefix_unet", self.prefix.clone())
        self.prefix_linear = state.get("adversaries.prefix_linear", self.prefix.clone())
        self.suffix = state.get("adversaries.suffix", self.prefix.clone())
        self.word_suffix = state.get("adversaries.words", self.word_suffix)

    def loss(self, model, ids, idx, filler_id, targets, steps, lr, concept_weight=1.0, unet_term=None,
             outer_unet=None, unet_captions=0):
        """The outer losses on the batch `idx` of forget captions (`ids` their tokens; `targets` from
        FeatureCache.adversarial_targets), after `steps` more inner steps on each of their adversarial inputs:
        {'adversarial': the text-space term, 'adversarial_unet': the UNet-space one, with `outer_unet`}. With
        `unet_term`, the prefix attack is the real soft-prompt threat: it minimises the frozen UNet's denoising loss
        on the concept's images instead of matching the original's states. The concept-vector part weighs
        `concept_weight` against the prefix part. With `outer_unet` (a UNetTerm), the prefixed states must also make
        the frozen UNet predict what the target states make it predict: state distances weigh every direction alike,
        and the states the soft-prompt attack finds sit nearer the anchor's than the concept's yet draw the concept
        (benchmarks/README.md, sixth round). With `unet_captions` > 0 the outer step reads a second prefix set
        instead, on the batch's first `unet_captions` captions, attacked with the UNet's denoising loss: the text-space
        set keeps what it guards, and the UNet-space one finds the prefixes that really draw the concept.

        A prefixed caption's target is the original's states of the anchored caption behind a neutral filler prefix,
        position for position: the encoder unlearns what the prefix adds, and need not learn to read a caption five
        positions later as if it began at the start (which it would also do to every kept caption)."""
        orig_states, anchor_states, goal = targets.forget, targets.anchor, targets.prefix_anchor
        width, mask = self.prefix.shape[-1], self.mask[idx]
        rows = mask.any(1)
        sub, m, at = ids[rows], mask[rows], idx[rows]
        shifted, pmask = prefixed(ids, PREFIX, filler_id)
        if unet_term is not None:
            objective = unet_term.denoising_objective(len(idx))
        else:  # the prefix should carry the concept itself (its token's original state), the caption stay the concept
            weights = mask.float() / mask.float().sum(1, keepdim=True).clamp(min=1)
            concept_state = (weights.unsqueeze(-1) * orig_states).sum(1, keepdim=True)
            target = torch.cat([orig_states[:, :1], concept_state.expand(-1, PREFIX, -1), orig_states[:, 1:-PREFIX]], 1)
            objective = lambda states: F.mse_loss(states, target)  # noqa: E731
        sets = {}  # each inner attack's (ids, mask, start, objective); they run as one batch
        if rows.any():  # the concept's own tokens replaced by free vectors
            sets["concept"] = (sub, m, self.concept[at][m], lambda states: F.mse_loss(states, orig_states[rows]))
        sets["prefix"] = (shifted, pmask, self.prefix[idx].reshape(-1, width), objective)
        if self.gradients is not None:
            g = self.gradients[idx]
            gain = lambda states: ((states - goal) * g).sum((1, 2))  # noqa: E731  first-order change of that loss
            sets["linear"] = (shifted, pmask, self.prefix_linear[idx].reshape(-1, width),
                              lambda states: gain(states).mean())
        if self.suffixed is not None:  # vectors after the caption's words, as the discrete search appends its words
            s_ids, s_mask = self.suffixed[0][idx], self.suffixed[1][idx]
            sets["suffix"] = (s_ids, s_mask, self.suffix[idx].reshape(-1, width),
                              lambda states: F.mse_loss(states, orig_states))
        n = min(unet_captions, len(idx)) if outer_unet is not None else 0
        if n:  # a second prefix set, attacked through the UNet itself
            sets["unet"] = (shifted[:n], pmask[:n], self.prefix_unet[idx[:n]].reshape(-1, width),
                            outer_unet.denoising_objective(n))
        found = dict(zip(sets, inner_attack(model, list(sets.values()), steps, lr)))
        terms = []
        if "concept" in found:
            self.concept[at] = self.concept[at].masked_scatter(m.unsqueeze(-1), found["concept"])
            # weighed down (concept_weight): once the encoder unlearns the concept, the input nearest its old states is a
            # kept concept's (the circle's adversaries drift to the square's), and unlearning that erases it too
            terms.append(concept_weight * F.mse_loss(encode(model, sub, found["concept"], m), anchor_states[rows]))
        self.prefix[idx] = found["prefix"].view(len(idx), PREFIX, -1)
        states = encode(model, shifted, found["prefix"], pmask)
        terms.append(F.mse_loss(states, goal))
        out = {"adversarial": sum(terms) / len(terms)}
        if "linear" in found:  # maps the first-order set back to the goal, and penalises the first-order gain left
            self.prefix_linear[idx] = found["linear"].view(len(idx), PREFIX, -1)
            linear = encode(model, shifted, found["linear"], pmask)
            out.update(adversarial_linear_states=F.mse_loss(linear, goal),
                       adversarial_linear=F.relu(-gain(linear)).mean())
        if "suffix" in found:  # the suffixed caption's target: the anchored one with the filler after its words
            self.suffix[idx] = found["suffix"].view(len(idx), PREFIX, -1)
            goal_suffix = targets.suffix_anchor
            if self.carried is not None:  # what the original makes of the same vectors after the anchored caption
                original, (a_ids, a_mask) = self.carried
                with torch.no_grad():
                    goal_suffix = encode(original, a_ids[idx], found["suffix"], a_mask[idx])
            out["adversarial_suffix"] = F.mse_loss(encode(model, s_ids, found["suffix"], s_mask), goal_suffix)
        if self.words is not None:
            out["adversarial_words"] = self.word_loss(model, ids[:WORD_CAPTIONS], idx[:WORD_CAPTIONS],
                                                      orig_states[:WORD_CAPTIONS])
        if n:
            self.prefix_unet[idx[:n]] = found["unet"].view(n, PREFIX, -1)
            states, goal = encode(model, shifted[:n], found["unet"], pmask[:n]), goal[:n]
        if outer_unet is not None:
            out["adversarial_unet"] = outer_unet.prefix_loss(states, goal)
        return out

    def word_loss(self, model, ids, idx, orig_states):
        """The word set: one greedy step of the discrete attack's own search in text space (each caption's words so far,
        plus the candidate word whose states come closest to the original's states of the plain caption), then the
        anchor term on the caption with its words: the original's states of the anchored caption with the same words.
        Only words of the data's own captions are candidates (never a concept's name, the anchor or a held-out word)."""
        words, original, anchor_ids, end = self.words
        current = self.word_suffix[idx]
        current[(current >= 0).sum(1) == WORDS] = -1  # a full suffix starts over: the next searches explore anew
        cand = current.repeat_interleave(len(words), 0)
        cand[torch.arange(len(cand)), (current >= 0).sum(1).repeat_interleave(len(words))] = words.repeat(len(idx))
        with torch.no_grad():
            states = encode(model, appended(ids.repeat_interleave(len(words), 0), cand, end)[0])
            dist = ((states - orig_states.repeat_interleave(len(words), 0)) ** 2).mean((1, 2)).view(len(idx), -1)
            best = cand.view(len(idx), len(words), -1)[torch.arange(len(idx)), dist.argmin(1)]
            self.word_suffix[idx] = best
            goal = encode(original, appended(anchor_ids[idx], best, end)[0])
        return F.mse_loss(encode(model, appended(ids, best, end)[0]), goal)

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


def prefixed(ids, k, filler):
    """`ids` shifted right by k after the start token (the last k positions drop out), and the prefix mask."""
    out = torch.cat([ids[:, :1], torch.full((len(ids), k), filler, dtype=ids.dtype), ids[:, 1:-k]], dim=1)
    mask = torch.zeros_like(out, dtype=torch.bool)
    mask[:, 1:1 + k] = True
    return out, mask


def inner_attack(model, ids, mask, target, start, steps, lr, align=None, objective=None):
    """Vectors at `mask` fitted for `steps` Adam steps so that `model`'s states match `target` (at positions
    `align`, all when None), or minimise `objective(states)` when given; starts from `start`. Returns the vectors,
    detached."""
    vectors = torch.nn.Parameter(start.detach().clone())
    opt = torch.optim.Adam([vectors], lr=lr)
    for _ in range(steps):
        states = encode(model, ids, vectors, mask)
        if objective is not None:
            loss = objective(states)
        else:
            loss = F.mse_loss(states[:, align] if align is not None else states, target)
        opt.zero_grad()
        grad, = torch.autograd.grad(loss, vectors)  # the model's own gradients stay untouched
        vectors.grad = grad
        opt.step()
    return vectors.detach()


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
        self.gradients = None  # (N_core, L, D): the UNet's concept gradients at the prefix targets, set by the setup

    def state_dict(self):
        return {"adversaries.concept": self.concept.contiguous(), "adversaries.prefix": self.prefix.contiguous(),
                "adversaries.prefix_unet": self.prefix_unet.contiguous(),
                "adversaries.prefix_linear": self.prefix_linear.contiguous()}

    def load_state_dict(self, state):
        self.concept, self.prefix = state["adversaries.concept"], state["adversaries.prefix"]
        # checkpoints from before the UNet-space set hold none: it starts where the text-space one stands
        self.prefix_unet = state.get("adversaries.prefix_unet", self.prefix.clone())
        self.prefix_linear = state.get("adversaries.prefix_linear", self.prefix.clone())

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
        orig_states, anchor_states = targets.forget, targets.anchor
        terms = []
        mask = self.mask[idx]
        rows = mask.any(1)
        if rows.any():  # the concept's own tokens replaced by free vectors
            sub, m, at = ids[rows], mask[rows], idx[rows]
            adv = inner_attack(model, sub, m, orig_states[rows], self.concept[at][m], steps, lr)
            self.concept[at] = self.concept[at].masked_scatter(m.unsqueeze(-1), adv)
            # weighed down (concept_weight): once the encoder unlearns the concept, the input nearest its old states is a
            # kept concept's (the circle's adversaries drift to the square's), and unlearning that erases it too
            terms.append(concept_weight * F.mse_loss(encode(model, sub, adv, m), anchor_states[rows]))
        shifted, pmask = prefixed(ids, PREFIX, filler_id)
        start = self.prefix[idx].reshape(-1, self.prefix.shape[-1])
        if unet_term is not None:
            objective = unet_term.denoising_objective(len(idx))
        else:  # the prefix should carry the concept itself (its token's original state), the caption stay the concept
            weights = mask.float() / mask.float().sum(1, keepdim=True).clamp(min=1)
            concept_state = (weights.unsqueeze(-1) * orig_states).sum(1, keepdim=True)
            target = torch.cat([orig_states[:, :1], concept_state.expand(-1, PREFIX, -1), orig_states[:, 1:-PREFIX]], 1)
            objective = lambda states: F.mse_loss(states, target)  # noqa: E731
        adv = inner_attack(model, shifted, pmask, None, start, steps, lr, objective=objective)
        self.prefix[idx] = adv.view(len(idx), PREFIX, -1)
        states = encode(model, shifted, adv, pmask)
        terms.append(F.mse_loss(states, targets.prefix_anchor))
        out = {"adversarial": sum(terms) / len(terms)}
        goal = targets.prefix_anchor
        if self.gradients is not None:
            out.update(self.linear_loss(model, shifted, pmask, idx, goal, steps, lr))
        if outer_unet is not None and unet_captions:  # a second prefix set, attacked through the UNet itself
            n = min(unet_captions, len(idx))
            start = self.prefix_unet[idx[:n]].reshape(-1, self.prefix.shape[-1])
            adv = inner_attack(model, shifted[:n], pmask[:n], None, start, steps, lr,
                               objective=outer_unet.denoising_objective(n))
            self.prefix_unet[idx[:n]] = adv.view(n, PREFIX, -1)
            states, goal = encode(model, shifted[:n], adv, pmask[:n]), goal[:n]
        if outer_unet is not None:
            out["adversarial_unet"] = outer_unet.prefix_loss(states, goal)
        return out

    def linear_loss(self, model, shifted, pmask, idx, goal, steps, lr):
        """The first-order set on the prefixed captions `shifted` (batch `idx`; `goal` their targets): its inner attack
        lowers <states - goal, g> (g: the UNet's concept gradient at the goal), i.e. the UNet's denoising loss on the
        concept's images to first order, as the soft-prompt attack does. Returns {'adversarial_linear_states': MSE to
        the goal, 'adversarial_linear': the first-order gain left, relu(-<states - goal, g>)}."""
        g = self.gradients[idx]
        gain = lambda states: ((states - goal) * g).sum((1, 2))  # noqa: E731  first-order change of that loss
        start = self.prefix_linear[idx].reshape(-1, self.prefix.shape[-1])
        adv = inner_attack(model, shifted, pmask, None, start, steps, lr, objective=lambda states: gain(states).mean())
        self.prefix_linear[idx] = adv.view(len(idx), PREFIX, -1)
        states = encode(model, shifted, adv, pmask)
        return {"adversarial_linear_states": F.mse_loss(states, goal), "adversarial_linear": F.relu(-gain(states)).mean()}

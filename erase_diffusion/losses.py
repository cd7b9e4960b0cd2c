"""CLIPErase's losses (Yang et al., ACL 2025, arXiv 2410.23330) and the conditioning-aware terms SD needs.

Notation: f_img, f_txt are L2-normalised CLIP embeddings (CLIP's own similarity), s = exp(logit_scale), and a batch
holds N image-text pairs (x_n, t_n). The paper's total is  L = λ1·L_RM + λ2·L_FM + λ3·L_CM  (λ1=1, λ2=λ3=3).
"""

import torch
import torch.nn.functional as F


def forget_loss(img_emb, txt_emb):
    """Forgetting module:  L_FM = (1/N_f) Σ_n f_img(x_n) · f_txt(t_n)  over forget pairs.

    Minimising it drives each forget pair's similarity to zero and below.
    """
    return (F.normalize(img_emb, dim=-1) * F.normalize(txt_emb, dim=-1)).sum(-1).mean()


def clip_logits(img_emb, txt_emb, logit_scale):
    """Image->text logits  s · f_img(x_i) · f_txt(t_j); the transpose gives text->image."""
    return logit_scale * F.normalize(img_emb, dim=-1) @ F.normalize(txt_emb, dim=-1).t()


def retain_loss(img_emb, txt_emb, logit_scale):
    """Retention module: CLIP's symmetric contrastive loss on retain pairs,
    L_RM = ½ [CE(softmax_j(s·f_img(x_i)·f_txt(t_j)), i) + CE(softmax_i(s·f_img(x_i)·f_txt(t_j)), j)].
    """
    logits = clip_logits(img_emb, txt_emb, logit_scale)
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def consistency_loss(orig_logits, new_logits):
    """Consistency module:  L_CM = (1/N_r) Σ_n [KL(p_o^img ‖ p_u^img) + KL(p_o^txt ‖ p_u^txt)],
    p^img = softmax over texts of each image's row, p^txt = softmax over images of each text's column;
    o = the frozen original model, u = the model being unlearned.
    """
    kl = 0.0
    for o, u in ((orig_logits, new_logits), (orig_logits.t(), new_logits.t())):
        kl = kl + F.kl_div(u.log_softmax(-1), o.log_softmax(-1), log_target=True, reduction="batchmean")
    return kl


def token_preservation_loss(new_states, orig_states):
    """Keeps retain prompts' per-token hidden states (what SD's UNet cross-attends to) at the original's:
    L_TP = mean_{n,k,d} (h_u(t_n)[k,d] - h_o(t_n)[k,d])².
    """
    return F.mse_loss(new_states, orig_states)


def anchor_loss(new_states, anchor_states):
    """Removes only the concept's contribution: a forget prompt's token states are pulled to the original encoder's
    states of the same prompt with the concept word replaced by a neutral anchor, so colour and layout words stay:
    L_AN = mean_{n,k,d} (h_u(t_n)[k,d] - h_o(t_n[concept→anchor])[k,d])².
    """
    return F.mse_loss(new_states, anchor_states)


def rows_anchor_loss(new_states, anchor_states, rows):
    """The anchor term again on some rows of the batch only (two-object captions), every position, but normalised by
    the whole batch as `anchor_loss` is: its weight adds to the anchor weight on those rows and leaves the other rows'
    balance against the adversarial terms as it was.
    L = Σ_{n∈rows,k,d} (h_u(t_n)[k,d] - h_o(t_n[concept→anchor])[k,d])² / (N·K·D).
    """
    return anchor_loss(new_states[rows], anchor_states[rows]) * len(rows) / len(new_states)


def total_loss(terms, weights):
    """Σ_k λ_k · L_k over the terms present; returns the sum and a dict of floats for logging."""
    total = sum(weights[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}

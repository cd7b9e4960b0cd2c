"""UCE: Unified Concept Editing (Gandikota et al., WACV 2024), the closed-form cross-attention edit.

Every cross-attention key and value projection W (to_k, to_v of each UNet attn2) is replaced by the minimiser of

    λ ||W' - W||² + s_e Σ_{c∈E} ||W' k_c - v*_c||² + s_p Σ_{c∈P} ||W' k_c - W k_c||²

    W' = (λ W + s_e Σ_E v*_c k_cᵀ + s_p Σ_P W k_c k_cᵀ) (λ I + s_e Σ_E k_c k_cᵀ + s_p Σ_P k_c k_cᵀ)⁻¹

where k_c are the text encoder's token states (what the UNet's cross-attention reads) of an erase prompt, v*_c =
W k_anchor the original projection of the anchored prompt (the concept replaced by a neutral word), and P the
prompts to preserve. As in the authors' reference code (train-scripts/train_erase.py), the token states used are
those from the prompt's last word on (that word, end-of-text and padding), aligned between the prompt and its
anchor from that word; defaults lamb=0.1, erase_scale=1, preserve_scale=max(0.1, 1/|P|).
"""

import torch


@torch.no_grad()
def token_states(pipe, texts):
    """(states (N, L, H), index of each text's last word token) under the pipeline's own tokenizer and encoder."""
    tok = pipe.tokenizer(texts, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True,
                         return_tensors="pt")
    states = pipe.text_encoder(tok.input_ids).last_hidden_state
    return states.double(), (tok.attention_mask.sum(1) - 2).tolist()  # -2: skip end-of-text, 0-based


def aligned(states_old, idx_old, states_new, idx_new):
    """The reference code's alignment: from the last word on, trimmed so both spans have the same length."""
    length = states_old.shape[0]
    far = max(idx_old, idx_new)
    return (states_old[idx_old:length - (far - idx_old)], states_new[idx_new:length - (far - idx_new)])


def cross_attention_projections(unet):
    """Every to_k and to_v of the UNet's cross-attention (attn2) blocks."""
    return [proj for name, module in unet.named_modules() if name.endswith("attn2")
            for proj in (module.to_k, module.to_v)]


@torch.no_grad()
def edit(pipe, erase_texts, anchor_texts, preserve_texts, lamb=0.1, erase_scale=1.0, preserve_scale=None):
    """Apply UCE to pipe.unet in place; returns the number of projections edited."""
    if preserve_scale is None:
        preserve_scale = max(0.1, 1.0 / max(1, len(preserve_texts)))
    s_old, i_old = token_states(pipe, erase_texts)
    s_new, i_new = token_states(pipe, anchor_texts)
    pairs = [aligned(s_old[n], i_old[n], s_new[n], i_new[n]) for n in range(len(erase_texts))]
    k_erase = torch.cat([k for k, _ in pairs])  # (T_e, H): keys that must now give the anchor's values
    k_anchor = torch.cat([a for _, a in pairs])
    if preserve_texts:
        s_p, i_p = token_states(pipe, preserve_texts)
        k_keep = torch.cat([s_p[n, i_p[n]:] for n in range(len(preserve_texts))])  # (T_p, H): keep their values
    else:
        k_keep = k_erase.new_zeros(0, k_erase.shape[1])
    eye = torch.eye(k_erase.shape[1], dtype=torch.float64)
    # Σ k kᵀ terms do not depend on the layer: build them once.
    gram = lamb * eye + erase_scale * k_erase.T @ k_erase + preserve_scale * k_keep.T @ k_keep
    projections = cross_attention_projections(pipe.unet)
    for proj in projections:
        w = proj.weight.double()  # (out, H)
        v_star = k_anchor @ w.T  # targets: the original projection of the anchored prompt's tokens
        rhs = lamb * w + erase_scale * v_star.T @ k_erase + preserve_scale * (k_keep @ w.T).T @ k_keep
        # W' = rhs · gram⁻¹, solved rather than inverted (gram is symmetric positive definite)
        proj.weight.copy_(torch.linalg.solve(gram, rhs.T).T.to(proj.weight.dtype))
    return len(projections)

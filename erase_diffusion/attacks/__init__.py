"""Attacks that try to get an erased concept back, each judged on the images the erased pipeline then draws.

- discrete.py: a greedy word-token search, up to 5 added tokens (UnlearnDiffAtk's budget);
- soft_prompt.py: k continuous input embeddings, optimised through the erased text encoder and the frozen UNet
  (the white-box threat AdvUnlearn trains against);
- inversion.py: concept inversion (Pham et al., ICLR 2024): one new token's embedding learnt by textual inversion
  through the erased encoder, then used in "a {colour} <token>" prompts.
common.py holds what they share: encoding with learnt embeddings in place of token rows, the denoising loss, images
of the concept, rendering from prompt embeddings.
"""

ATTACKS = ("discrete", "soft_prompt", "inversion")

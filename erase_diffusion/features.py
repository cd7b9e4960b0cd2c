"""The frozen side of the objective, per text encoder: image embeddings and the original encoder's outputs.

Computed once before the first step when cached (the default), else by frozen copies every step. The caption sets:
- "forget" / "retain": the captions of the image pairs (the paper's terms: pooled embeddings against images);
- "text_forget" (with its anchored twins "text_anchor") / "text_retain": the token-state terms' captions (prompts.py).
"""

import copy
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

# Frozen passes run in chunks of about this many tokens: enough rows for full-speed matmuls, and a ViT-L chunk
# (15 images of 257 tokens) holds ~0.1 GB of activations instead of the ~0.4 GB of a fixed 128 images.
TOKENS_PER_CHUNK = 1024


@dataclass
class FeatureCache:
    encoder: object
    ids: dict  # caption set -> token ids
    pixels: dict  # "forget" / "retain" -> image tensors
    index: int
    cached: bool
    train_vision: bool
    forget_states: bool = False  # also keep the original's states the adversarial term reads (its captions only)
    stored: dict = field(default_factory=dict)
    frozen_text: object = None
    counts: dict = field(default_factory=lambda: {"text_forward": 0, "vision_forward": 0})

    @torch.no_grad()
    def build(self):
        """Frozen image embeddings and the original encoder's outputs: once when cached, else kept as frozen copies.

        Runs before the encoder becomes trainable, so when cached the encoder itself is still the original and
        needs no copy. The vision tower, its projection and the pixels are dropped as soon as the image embeddings
        exist, before the text pass, so the two towers are never resident together. The projection matters: its
        weight is a view into the CLIP file's memory map, and while any view lives the whole map stays resident
        (1.2 GB of ViT-L pages touched by the caching pass).
        """
        if not self.cached:
            self.frozen_text = copy.deepcopy(self.encoder.text_encoder).eval().requires_grad_(False)
            self.frozen_vision = copy.deepcopy(self.encoder.vision) if self.train_vision else self.encoder.vision
            return
        for which in ("forget", "retain"):
            self.stored[f"img_{which}"] = self._embed(self.encoder.vision, self.pixels[which])
        self.encoder.vision = self.encoder.visual_projection = self.pixels = None
        self.frozen_text = self.encoder.text_encoder.eval()
        _, self.stored["r_emb"] = self._text(self.ids["retain"])
        self.stored["anchor_states"], _ = self._text(self.ids["text_anchor"])
        self.stored["retain_states"], _ = self._text(self.ids["text_retain"])
        if self.forget_states:
            for key in [k for k in ("adversarial_forget", "prefix_anchor", "suffix_anchor") if k in self.ids]:
                self.stored[f"{key}_states"], _ = self._text(self.ids[key])
        self.frozen_text = None

    def _embed(self, vision, pixels):
        self.counts["vision_forward"] += len(pixels)
        chunk = max(1, TOKENS_PER_CHUNK // vision.embeddings.num_positions)
        return torch.cat([self.encoder.visual_projection(vision(pixel_values=pixels[i:i + chunk]).pooler_output)
                          for i in range(0, len(pixels), chunk)])

    def _text(self, ids):
        if not len(ids):
            return None, None
        self.counts["text_forward"] += len(ids)
        chunk = max(1, TOKENS_PER_CHUNK // ids.shape[1])
        outs = [self.encoder.text(self.frozen_text, ids[i:i + chunk]) for i in range(0, len(ids), chunk)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def image_embeds(self, which, idx, models):
        if self.train_vision:
            pixels = self.pixels[which][idx]
            self.counts["vision_forward"] += len(pixels)
            return self.encoder.visual_projection(models[f"vision_{self.index}"](pixel_values=pixels).pooler_output)
        if self.cached:
            return self.stored[f"img_{which}"][idx]
        with torch.no_grad():
            return self._embed(self.frozen_vision, self.pixels[which][idx])

    def adversarial_targets(self, idx):
        """What the adversarial term attacks towards and unlearns to, as the original's states: of forget captions
        `idx` (forget), of their anchored twins (anchor), of those behind a filler prefix (prefix_anchor)."""
        def states(key, rows):
            if self.cached:
                return self.stored[f"{key}_states"][rows]
            with torch.no_grad():
                return self._text(self.ids[key][rows])[0]

        anchor = self.stored["anchor_states"][idx] if self.cached else states("text_anchor", idx)
        return SimpleNamespace(forget=states("adversarial_forget", idx), anchor=anchor,
                               prefix_anchor=states("prefix_anchor", idx),
                               suffix_anchor=states("suffix_anchor", idx) if "suffix_anchor" in self.ids else None)

    def original(self, idx_r, img_r, idx_tf, idx_tr):
        """The frozen original's side of the objective for this batch (`img_r`: this step's retain image embeddings,
        reused when the vision tower is frozen rather than computed a second time)."""
        if self.cached:
            s = self.stored
            return SimpleNamespace(img_r=s["img_retain"][idx_r], r_emb=s["r_emb"][idx_r],
                                   anchor_states=s["anchor_states"][idx_tf] if len(idx_tf) else None,
                                   retain_states=s["retain_states"][idx_tr] if len(idx_tr) else None)
        with torch.no_grad():
            _, r_emb = self._text(self.ids["retain"][idx_r])
            if self.train_vision:
                img_r = self._embed(self.frozen_vision, self.pixels["retain"][idx_r])
            anchor = self._text(self.ids["text_anchor"][idx_tf])[0] if len(idx_tf) else None
            retain = self._text(self.ids["text_retain"][idx_tr])[0] if len(idx_tr) else None
            return SimpleNamespace(img_r=img_r, r_emb=r_emb, anchor_states=anchor, retain_states=retain)

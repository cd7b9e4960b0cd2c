"""Everything an erasure run needs before its first step: checked arguments, models, data and cached features.

All of it happens before --output_dir is touched, so bad input leaves nothing behind.
"""

import copy
import os
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from . import checkpoint, data
from .errors import UsageError
from .families import default_clip_paths, detect_family, load_encoders
from .host_memory import pin_mmap_threshold
from .miniature import world
from .miniature import model_path as miniature_path
from .used_rows import train_used_rows


def validate_args(args):
    """One UsageError per bad flag value, before any model is loaded."""
    args.pretrained_model_name_or_path = args.pretrained_model_name_or_path or miniature_path()
    for name in ("lambda_retain", "lambda_forget", "lambda_consistency", "lambda_preserve", "lambda_anchor"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} {getattr(args, name)} must be >= 0")
    if args.learning_rate is None:
        args.learning_rate = 1e-3 if args.lora_rank else 1e-4  # low-rank updates need larger steps to move as far
    if args.learning_rate <= 0:
        raise UsageError(f"--learning_rate {args.learning_rate} must be > 0")
    if args.lora_rank is not None and args.lora_rank <= 0:
        raise UsageError(f"--lora_rank {args.lora_rank} must be a positive integer")
    for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "num_forget_images", "num_retain_images"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} {getattr(args, name)} must be a positive integer")
    if args.optimizer_in_backward and args.gradient_accumulation_steps > 1:
        raise UsageError(f"--optimizer_in_backward steps on every backward pass, so --gradient_accumulation_steps "
                         f"{args.gradient_accumulation_steps} cannot accumulate: use 1")
    if args.optimizer_in_backward and args.mixed_precision == "fp16":
        raise UsageError("--optimizer_in_backward cannot unscale fp16 gradients: use --mixed_precision bf16 or no")
    if args.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise UsageError("--mixed_precision fp16 needs a CUDA GPU; on CPU use 'bf16' or 'no'")
    if not args.concept or any(not c for c in args.concept):
        raise UsageError(f"--concept {args.concept!r}: expected one or more non-empty concepts")
    out = args.output_dir
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--output_dir {out!r} exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not (args.overwrite_output_dir or args.resume_from_checkpoint):
        raise UsageError(f"--output_dir {out!r} exists and is not empty (pass --overwrite_output_dir, or "
                         "--resume_from_checkpoint to continue a run)")
    if args.resume_from_checkpoint:
        checkpoint.resolve(out, args.resume_from_checkpoint)


# Frozen passes run in chunks of about this many tokens: enough rows for full-speed matmuls, and a ViT-L chunk
# (15 images of 257 tokens) holds ~0.1 GB of activations instead of the ~0.4 GB of a fixed 128 images.
TOKENS_PER_CHUNK = 1024


@dataclass
class FeatureCache:
    """One encoder's tokenized captions and the frozen side of the objective, computed once (or every step)."""

    encoder: object
    forget_ids: torch.Tensor
    retain_ids: torch.Tensor
    anchor_ids: torch.Tensor
    forget_pixels: torch.Tensor
    retain_pixels: torch.Tensor
    index: int
    cached: bool
    train_vision: bool
    stored: dict = field(default_factory=dict)
    frozen_text: object = None

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
        self.stored["forget"] = self._embed(self.encoder.vision, self.forget_pixels)
        self.stored["retain"] = self._embed(self.encoder.vision, self.retain_pixels)
        self.encoder.vision = self.encoder.visual_projection = self.forget_pixels = self.retain_pixels = None
        self.frozen_text = self.encoder.text_encoder.eval()
        self.stored["r_states"], self.stored["r_emb"] = self._text(self.retain_ids)
        self.stored["anchor_states"], _ = self._text(self.anchor_ids)
        self.frozen_text = None

    def _embed(self, vision, pixels):
        chunk = max(1, TOKENS_PER_CHUNK // vision.embeddings.num_positions)
        return torch.cat([self.encoder.visual_projection(vision(pixel_values=pixels[i:i + chunk]).pooler_output)
                          for i in range(0, len(pixels), chunk)])

    def _text(self, ids):
        chunk = max(1, TOKENS_PER_CHUNK // ids.shape[1])
        outs = [self.encoder.text(self.frozen_text, ids[i:i + chunk]) for i in range(0, len(ids), chunk)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def image_embeds(self, which, idx, models):
        pixels = self.forget_pixels if which == "forget" else self.retain_pixels
        if self.train_vision:
            return self.encoder.visual_projection(models[f"vision_{self.index}"](pixel_values=pixels[idx]).pooler_output)
        if self.cached:
            return self.stored[which][idx]
        with torch.no_grad():
            return self._embed(self.frozen_vision, pixels[idx])

    def original(self, idx_f, idx_r, img_r=None):
        """The frozen original's side of the objective for this batch (`img_r`: this step's retain image embeddings,
        reused when the vision tower is frozen rather than computed a second time)."""
        if self.cached:
            s = self.stored
            return SimpleNamespace(img_r=s["retain"][idx_r], r_states=s["r_states"][idx_r], r_emb=s["r_emb"][idx_r],
                                   anchor_states=s["anchor_states"][idx_f])
        with torch.no_grad():
            states, emb = self._text(torch.cat([self.retain_ids[idx_r], self.anchor_ids[idx_f]]))
            (r_states, anchor_states), r_emb = states.split([len(idx_r), len(idx_f)]), emb[:len(idx_r)]
            if img_r is None or self.train_vision:
                img_r = self._embed(self.frozen_vision, self.retain_pixels[idx_r])
            return SimpleNamespace(img_r=img_r, r_states=r_states,
                                   r_emb=r_emb, anchor_states=anchor_states)


@dataclass
class Setup:
    family: str
    concepts: list
    retain: list
    anchor: str
    encoders: list
    cache: list
    forget: data.Pairs
    retain_pairs: data.Pairs
    seconds: dict = field(default_factory=dict)  # data, models, cache: where setup time went

    @property
    def n_forget(self):
        return len(self.forget)

    @property
    def n_retain(self):
        return len(self.retain_pairs)


def resolve_concepts(args, family):
    concepts = args.concept
    if family == "miniature":
        unknown = [c for c in concepts if c not in world.SHAPES]
        if unknown:
            raise UsageError(f"--concept {', '.join(unknown)}: the miniature knows only {', '.join(world.SHAPES)}")
        default_retain = [s for s in world.SHAPES if s not in concepts]
    else:
        default_retain = [c for c in data.DEFAULT_RETAIN if c not in concepts]
    retain = [c.strip() for c in args.retain_concepts.split(",") if c.strip()] if args.retain_concepts else default_retain
    both = sorted(set(concepts) & set(retain))
    if both:
        raise UsageError(f"concept(s) {', '.join(both)} appear in both --concept and --retain_concepts")
    # the neutral blob is drawn too: the one thing left to keep when every shape is erased
    if family == "miniature" and (unknown := [c for c in retain if c not in world.DRAWN]):
        raise UsageError(f"--retain_concepts {', '.join(unknown)}: the miniature knows only {', '.join(world.DRAWN)}")
    if not retain:
        hint = (f" (every shape is erased: --retain_concepts {world.NEUTRAL} keeps its neutral shape)"
                if family == "miniature" else "")
        raise UsageError(f"the retain set is empty: name --retain_concepts that the erasure must keep{hint}")
    anchor = args.anchor if args.anchor is not None else (world.NEUTRAL if family == "miniature" else "")
    return concepts, retain, anchor


def load_pairs(args, family, concepts, retain, anchor):
    source = args.data_source
    if source == "auto":
        source = "folder" if args.forget_data_dir else ("renderer" if family == "miniature" else "generate")
    if source == "folder":
        if not (args.forget_data_dir and args.retain_data_dir):
            raise UsageError("--data_source folder needs both --forget_data_dir and --retain_data_dir")
        words = list(concepts) + [w for c in concepts if c in world.PARAPHRASES for w in world.PARAPHRASES[c]]
        return (data.from_image_folder(args.forget_data_dir, words, anchor), data.from_image_folder(args.retain_data_dir))
    if source == "renderer":
        if family != "miniature":
            raise UsageError("--data_source renderer works only with the miniature base model")
        return data.from_renderer(concepts, retain, args.num_forget_images, args.num_retain_images, args.seed, anchor)
    from .generate import generate, load_pipeline

    templates = args.prompt_templates.split("|") if args.prompt_templates else list(data.DEFAULT_TEMPLATES)
    if any("{}" not in t for t in templates):
        raise UsageError(f"--prompt_templates {args.prompt_templates!r}: every template needs a '{{}}' for the concept")
    pipe = load_pipeline(args.pretrained_model_name_or_path)
    per = lambda n, k: max(1, n // len(k))  # noqa: E731
    forget, _ = data.from_pipeline(pipe, concepts, [], templates, per(args.num_forget_images, concepts), args.seed, anchor, generate)
    _, kept = data.from_pipeline(pipe, [], retain, templates, per(args.num_retain_images, retain), args.seed + 7, anchor, generate)
    return forget, kept


def prepare(args, accelerator):
    family = detect_family(args.pretrained_model_name_or_path)
    concepts, retain, anchor = resolve_concepts(args, family)
    t = time.perf_counter()
    forget, kept = load_pairs(args, family, concepts, retain, anchor)  # data errors surface before slow model loads
    seconds = {"data": time.perf_counter() - t}
    t = time.perf_counter()
    clip_paths = args.clip_model_name_or_path or default_clip_paths(family, args.pretrained_model_name_or_path)
    encoders = load_encoders(args.pretrained_model_name_or_path, family, clip_paths)
    # before the caching pass: its ViT activations would otherwise leave the heap fragmented for the whole run
    pin_mmap_threshold(sum(p.numel() for e in encoders for p in e.text_encoder.parameters()), accelerator.device.type)
    seconds["models"] = time.perf_counter() - t
    t = time.perf_counter()
    cache = []
    for k, enc in enumerate(encoders):
        c = FeatureCache(enc, enc.tokenize(forget.captions), enc.tokenize(kept.captions), enc.tokenize(forget.anchored),
                         enc.pixels(forget.images), enc.pixels(kept.images), k, args.cache_features and not args.train_vision_tower,
                         args.train_vision_tower)
        c.build()
        cache.append(c)
        add_trainable(args, enc, torch.cat([c.forget_ids, c.retain_ids]))
    seconds["cache"] = time.perf_counter() - t
    return Setup(family, concepts, retain, anchor, encoders, cache, forget, kept, seconds)


def add_trainable(args, enc, caption_ids):
    """Full text-tower weights by default (of the token table, the rows of `caption_ids`: no other row can move), a
    LoRA with --lora_rank; the vision tower too with --train_vision_tower."""
    if args.lora_rank:
        from peft import LoraConfig

        enc.text_encoder.requires_grad_(False)
        enc.text_encoder.add_adapter(LoraConfig(r=args.lora_rank, lora_alpha=args.lora_alpha or args.lora_rank,
                                                init_lora_weights="gaussian",
                                                target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    else:
        enc.text_encoder.requires_grad_(True)
        train_used_rows(enc.text_encoder, caption_ids)
    if args.gradient_checkpointing:
        model = enc.text_encoder  # newer transformers renamed it; the old name still works but warns
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    if args.train_vision_tower:
        enc.vision.requires_grad_(True).train()

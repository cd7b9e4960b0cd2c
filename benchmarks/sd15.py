"""A Stable Diffusion 1.5-sized erase target built in code (no download): the text encoder has the real ViT-L/14
text config and the paired CLIPModel has openai/clip-vit-large-patch14's config, both randomly initialised; the UNet
and VAE are tiny because erasing never runs them. Same approach as tests/tiny_sd.py, at real sizes.

Random weights cost as much memory and compute as trained ones, which is all memory.py measures.
"""

import json
import os

import numpy as np
import torch
from PIL import Image

# openai/clip-vit-large-patch14 (SD 1.x's text encoder is its text tower)
TEXT_L14 = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
VISION_L14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  patch_size=14, image_size=224, projection_dim=768, hidden_act="quick_gelu")
# Tiny stand-ins with the same structure, for --smoke and the many-concept scale benchmark.
TEXT_TINY = dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
                 max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32)
VISION_TINY = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, patch_size=8,
                   image_size=32, projection_dim=32)
RETAIN_CAPTIONS = ("a photo of a dog", "a picture of a car", "an image of a tree", "a photo of a house",
                   "a painting of a chair", "a photo of a flower", "a picture of a bird", "a photo of a person")


def build_tokenizer(vocab_size=49408, max_length=77):
    """A real CLIPTokenizer with SD's vocabulary size: the byte alphabet (so any text tokenizes) padded with unused
    entries up to `vocab_size`, so the embedding table has the real shape."""
    from transformers import CLIPTokenizer

    from erase_diffusion.miniature.tokenizer import BOS, EOS, _byte_alphabet

    alphabet = _byte_alphabet()
    tokens = [BOS, EOS] + alphabet + [c + "</w>" for c in alphabet]
    tokens += [f"<|unused{i}|>" for i in range(vocab_size - len(tokens))]
    # model_max_length must be explicit: a tokenizer built from our own vocab otherwise claims ~1e30.
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=max_length)


def write_folder(path, captions, size, seed):
    """Random-noise images with diffusers imagefolder captions: the erase loop reads pixels, not their meaning."""
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(os.path.join(path, "metadata.jsonl"), "w") as f:
        for i, text in enumerate(captions):
            name = f"{i:05d}.png"
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(os.path.join(path, name))
            f.write(json.dumps({"file_name": name, "text": text}) + "\n")


def build(root, text=TEXT_L14, vision=VISION_L14, seed=0):
    """Save root/pipe (an SD 1.x pipeline dir) and root/clip (its full CLIPModel); returns (pipe_dir, clip_dir).
    Reuses what an earlier call left there (building ViT-L takes a while on 2 cores)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

    from erase_diffusion.layout import save_pipeline

    pipe_dir, clip_dir = os.path.join(root, "pipe"), os.path.join(root, "clip")
    if os.path.isfile(os.path.join(pipe_dir, "model_index.json")) and os.path.isfile(os.path.join(clip_dir, "config.json")):
        return pipe_dir, clip_dir
    torch.manual_seed(seed)
    tok = build_tokenizer(text["vocab_size"], text["max_position_embeddings"])
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    text_cfg = CLIPTextConfig(**text, **ids)
    clip = CLIPModel(CLIPConfig(text_config=text_cfg.to_dict(), vision_config=vision, projection_dim=text["projection_dim"]))
    clip.save_pretrained(clip_dir)
    te = CLIPTextModel(text_cfg)
    inner = getattr(te, "text_model", te)  # transformers 5 flattened CLIPTextModel; 4.x wraps a text_model
    missing, unexpected = inner.load_state_dict(clip.text_model.state_dict(), strict=False)
    assert not missing, f"text tower keys missing: {missing[:5]}"  # SD's encoder is its CLIP's text tower
    del clip
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=text["hidden_size"], attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    save_pipeline(StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
                                          scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False),
                  pipe_dir)
    return pipe_dir, clip_dir


def concept_data(root, concepts, per_concept, n_retain, image_size, seed=0):
    """Forget folder with `per_concept` captioned images of each concept, retain folder with everyday captions.

    Every caption is distinct (numbered): the loop encodes each distinct caption of a batch once, so repeated
    template captions would shrink the batch it really runs and flatter time and memory.
    """
    forget = os.path.join(root, f"forget_{len(concepts)}x{per_concept}_distinct")
    retain = os.path.join(root, f"retain_{n_retain}_distinct")
    templates = ("a photo of a {}", "a picture of a {}", "an image of a {}", "a painting of a {}")
    if not os.path.isfile(os.path.join(forget, "metadata.jsonl")):
        write_folder(forget, [f"{templates[k % len(templates)].format(c)}, number {k}" for c in concepts
                              for k in range(per_concept)], image_size, seed)
    if not os.path.isfile(os.path.join(retain, "metadata.jsonl")):
        write_folder(retain, [f"{RETAIN_CAPTIONS[k % len(RETAIN_CAPTIONS)]}, number {k}" for k in range(n_retain)],
                     image_size, seed + 1)
    return forget, retain

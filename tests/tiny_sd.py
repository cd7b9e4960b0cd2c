"""Tiny, randomly initialised SD 1.x / 2.x / XL pipelines and their paired full CLIPs, built in code from the real
classes (as diffusers' own tests do) and saved to disk, so every family's real loading path runs without the hub."""

import os

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline,
                       UNet2DConditionModel)
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from erase_diffusion.layout import save_pipeline
from erase_diffusion.miniature.tokenizer import build_tokenizer

VISION = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
              num_attention_heads=4, projection_dim=32)


def text_config(tokenizer, act, hidden=32):
    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37, num_hidden_layers=3,
                          num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length, hidden_act=act,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, projection_dim=32)


def tiny_vae():
    return AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         sample_size=32)


def save_clip(text_encoder, path, seed):
    """A full CLIPModel whose text tower holds `text_encoder`'s weights (how SD's encoders relate to their CLIP)."""
    torch.manual_seed(seed)
    clip = CLIPModel(CLIPConfig(text_config=text_encoder.config.to_dict(), vision_config=VISION, projection_dim=32))
    clip.text_model.load_state_dict(getattr(text_encoder, "text_model", text_encoder).state_dict(), strict=False)
    clip.save_pretrained(path)
    return path


def build(family, root, seed=0):
    """Save a tiny `family` pipeline under root/pipe and its CLIP(s); returns (pipe_dir, [clip_dirs])."""
    torch.manual_seed(seed)
    tok = build_tokenizer()
    pipe_dir = os.path.join(root, "pipe")
    if family in ("sd1", "sd2"):
        te = CLIPTextModel(text_config(tok, "quick_gelu" if family == "sd1" else "gelu"))
        unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
                                    out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                    attention_head_dim=4, norm_num_groups=8)
        pipe = StableDiffusionPipeline(vae=tiny_vae(), text_encoder=te, tokenizer=tok, unet=unet,
                                       scheduler=DDIMScheduler(steps_offset=1, clip_sample=False), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        save_pipeline(pipe, pipe_dir)
        return pipe_dir, [save_clip(te, os.path.join(root, "clip"), seed + 1)]
    te = CLIPTextModel(text_config(tok, "quick_gelu"))
    te2 = CLIPTextModelWithProjection(text_config(tok, "gelu"))
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                                projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
                                norm_num_groups=8)
    pipe = StableDiffusionXLPipeline(vae=tiny_vae(), text_encoder=te, text_encoder_2=te2, tokenizer=tok,
                                     tokenizer_2=tok, unet=unet, scheduler=DDIMScheduler(steps_offset=1, clip_sample=False))
    save_pipeline(pipe, pipe_dir)
    return pipe_dir, [save_clip(te, os.path.join(root, "clip"), seed + 1),
                      save_clip(te2, os.path.join(root, "clip_2"), seed + 2)]

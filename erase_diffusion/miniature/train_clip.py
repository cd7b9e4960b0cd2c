"""Stage 1: the miniature's full CLIPModel (text + vision), trained contrastively on the world.

Its text tower becomes the pipeline's text encoder, exactly as SD 1.x's is the text tower of
openai/clip-vit-large-patch14; its vision tower is what CLIPErase needs on the image side.
"""

import argparse
import os

import torch
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from ..layout import save_model
from . import world
from .contrastive import Pool, cosine_lr, multi_positive_clip_loss, zero_shot
from .tokenizer import MAX_LENGTH, build_tokenizer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output_dir", required=True, help="Where clip/ (CLIPModel, tokenizer, image processor) is written.")
    p.add_argument("--max_train_steps", type=int, default=900, help="Optimiser steps (four paraphrases a shape and caption noise need more than the 500 that reach 98%% on clean captions).")
    p.add_argument("--train_batch_size", type=int, default=192, help="Pairs per contrastive batch.")
    p.add_argument("--learning_rate", type=float, default=1e-3, help="Peak AdamW learning rate.")
    p.add_argument("--pool_size", type=int, default=20000, help="Rendered training images (captions re-drawn each batch).")
    p.add_argument("--hidden_size", type=int, default=128, help="Width of both towers; the text width is the UNet's cross-attention dim.")
    p.add_argument("--num_layers", type=int, default=4, help="Transformer layers per tower.")
    p.add_argument("--eval_size", type=int, default=600, help="Fresh renders for the final zero-shot check.")
    p.add_argument("--seed", type=int, default=0, help="Seed for weights and data.")
    return p.parse_args(argv)


def build_model(tokenizer, hidden_size, num_layers):
    common = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                  num_attention_heads=4, projection_dim=64)
    text = dict(common, vocab_size=len(tokenizer), max_position_embeddings=MAX_LENGTH, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(common, image_size=world.IMAGE_SIZE, patch_size=4)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=64))


def encoders(model, tokenizer):
    """(encode_image, encode_text) returning projected embeddings; pixels are in [-1, 1] (mean = std = 0.5)."""

    def encode_text(captions):
        tok = tokenizer(captions, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
        out = model.text_model(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
        return model.text_projection(out.pooler_output)

    def encode_image(pixels):
        return model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)

    return encode_image, encode_text


def main(args):
    torch.manual_seed(args.seed)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, args.hidden_size, args.num_layers)
    # The blob is rare but present, so the text tower (and through it the UNet) knows the neutral anchor.
    pool = Pool(args.pool_size, seed=args.seed, neutral_prob=1 / 13, noise=True)  # noise: unseen wording stays harmless
    encode_image, encode_text = encoders(model, tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, args.max_train_steps, args.max_train_steps // 10 + 1))
    bar = tqdm(range(args.max_train_steps), desc="clip")
    for _ in bar:
        pixels, captions, labels = pool.batch(args.train_batch_size)
        loss = multi_positive_clip_loss(encode_image(pixels), encode_text(captions), labels, model.logit_scale.exp())
        loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
        bar.set_postfix(loss=f"{loss.item():.3f}")

    model.eval()
    fresh = world.sample(args.eval_size, seed=args.seed + 10_000)
    pixels = world.to_tensor_batch([f[0] for f in fresh])
    metrics = zero_shot(encode_image, encode_text, pixels, [f[2] for f in fresh], [f[3] for f in fresh])
    out = os.path.join(args.output_dir, "clip")
    save_model(model, out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": world.IMAGE_SIZE}, crop_size=world.IMAGE_SIZE, image_mean=[0.5] * 3,
                       image_std=[0.5] * 3).save_pretrained(out)
    return metrics


if __name__ == "__main__":
    print(main(parse_args()))

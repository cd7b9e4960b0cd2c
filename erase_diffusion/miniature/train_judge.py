"""Stage 2: the independent judge, a second CLIP in open_clip format (other seed, other architecture, other tokenizer).

It plays the role ViT-B/32 plays for UCE and MACE on real SD: the leak scorer that is not the model being unlearned.
Besides the six shapes it knows the neutral blob, so an image showing none of the shapes (what an erased prompt
should draw) has somewhere to go other than the nearest shape, as ImageNet's other classes do for ESD and UCE.
Its image tower is a ModifiedResNet (the miniature's is a ViT) and it tokenizes with open_clip's own 49k BPE.
"""

import argparse
import json
import os

import open_clip
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from . import world
from .contrastive import Pool, cosine_lr, multi_positive_clip_loss, zero_shot

MODEL_NAME = "miniature-judge"
LABELS = world.DRAWN  # what the judge can say an image shows
CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": world.IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32,
                   "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
IMAGE_MEAN = IMAGE_STD = (0.5, 0.5, 0.5)  # images in [-1, 1], as the world's tensors and the VAE use
WEIGHTS = "open_clip_model.safetensors"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--output_dir", required=True, help="Where judge/ (open_clip config + safetensors) is written.")
    p.add_argument("--max_train_steps", type=int, default=600, help="Optimiser steps.")
    p.add_argument("--train_batch_size", type=int, default=192, help="Pairs per contrastive batch.")
    p.add_argument("--learning_rate", type=float, default=2e-3, help="Peak AdamW learning rate.")
    p.add_argument("--pool_size", type=int, default=20000, help="Rendered training images (its own seed: not the miniature's data).")
    p.add_argument("--width", type=int, default=8, help="ResNet width; its attention pool is 32x wider.")
    p.add_argument("--eval_size", type=int, default=1200, help="Fresh renders for the final accuracy check.")
    p.add_argument("--seed", type=int, default=1, help="Seed for weights and data (differs from the miniature's on purpose).")
    return p.parse_args(argv)


def write_config(directory, config=CONFIG):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{MODEL_NAME}.json")
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return path


def main(args):
    torch.manual_seed(args.seed)
    out = os.path.join(args.output_dir, "judge")
    config = json.loads(json.dumps(CONFIG))
    config["vision_cfg"]["width"] = args.width
    open_clip.add_model_config(write_config(out, config))
    model = open_clip.create_model(MODEL_NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    pool = Pool(args.pool_size, seed=args.seed + 100, neutral_prob=1 / 13)
    opt = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, args.max_train_steps, args.max_train_steps // 10 + 1))
    encode_text = lambda captions: model.encode_text(tokenizer(captions))  # noqa: E731
    bar = tqdm(range(args.max_train_steps), desc="judge")
    for _ in bar:
        pixels, captions, labels = pool.batch(args.train_batch_size)
        loss = multi_positive_clip_loss(model.encode_image(pixels), encode_text(captions), labels, model.logit_scale.exp())
        loss.backward()
        opt.step(), sched.step(), opt.zero_grad()
        bar.set_postfix(loss=f"{loss.item():.3f}")

    model.eval()
    fresh = world.sample(args.eval_size, seed=args.seed + 20_000, neutral_prob=1 / 7)
    pixels = world.to_tensor_batch([f[0] for f in fresh])
    metrics = zero_shot(model.encode_image, encode_text, pixels, [f[2] for f in fresh], [f[3] for f in fresh],
                        labels=LABELS)
    # Half precision on disk: the 49k-token embedding table is most of the judge's size.
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, os.path.join(out, WEIGHTS))
    return metrics


if __name__ == "__main__":
    print(main(parse_args()))

"""The erase command's flags checked one by one, before any model is loaded: each bad value is one UsageError that
names it and what is expected. Checks that need the base model's family run in erasure_setup.prepare."""

import os

import torch

from . import checkpoint
from .errors import UsageError
from .miniature import model_path as miniature_path
from .versions import check_lora_support


def validate_args(args):
    """One UsageError per bad flag value, before any model is loaded."""
    args.pretrained_model_name_or_path = args.pretrained_model_name_or_path or miniature_path()
    for name in ("lambda_retain", "lambda_forget", "lambda_consistency", "lambda_preserve", "lambda_anchor",
                 "lambda_adversarial", "adversarial_concept_weight", "adversarial_every", "data_guidance_scale",
                 "lambda_unet", "lambda_adversarial_unet", "unet_adversaries", "lambda_pair_guard", "lambda_adversarial_linear",
                 "lambda_adversarial_suffix", "lambda_pair_padding", "lambda_adversarial_words",
                 "lambda_pair_anchor", "lambda_name_row"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise UsageError(f"--{name} {getattr(args, name)} must be >= 0")
    if not 0.0 < args.ema_decay < 1.0:
        raise UsageError(f"--ema_decay {args.ema_decay} must be within (0, 1)")
    if not 0.0 <= args.ema_power <= 1.0:
        raise UsageError(f"--ema_power {args.ema_power} must be within [0, 1] (0: EMAModel's own schedule)")
    if args.hard_pairs < 0:
        raise UsageError(f"--hard_pairs {args.hard_pairs} must be >= 0")
    if args.suffix_captions < 0:
        raise UsageError(f"--suffix_captions {args.suffix_captions} must be >= 0")
    if args.linear_gradient_samples < 1:
        raise UsageError(f"--linear_gradient_samples {args.linear_gradient_samples} must be a positive integer")
    if args.learning_rate is not None and args.learning_rate <= 0:  # None: per objective and LoRA (lever_defaults)
        raise UsageError(f"--learning_rate {args.learning_rate} must be > 0")
    if args.lr_warmup_steps < 0:
        raise UsageError(f"--lr_warmup_steps {args.lr_warmup_steps} must be >= 0")
    if args.lora_rank is not None and args.lora_rank <= 0:
        raise UsageError(f"--lora_rank {args.lora_rank} must be a positive integer")
    if args.tie_names and args.lora_rank:
        raise UsageError(f"--tie_names sets the name's token-embedding row, which a LoRA file (--lora_rank "
                         f"{args.lora_rank}) does not carry: use --no-tie_names or full weights")
    if args.lora_rank:
        check_lora_support()
    if not 0.0 <= args.caption_noise <= 1.0:
        raise UsageError(f"--caption_noise {args.caption_noise} must be a share within [0, 1]")
    for name in ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "num_forget_images",
                 "num_retain_images", "text_batch_size", "adversarial_steps", "data_inference_steps", "unet_batch_size",
                 "adversarial_batch_size", "unet_adversarial_every", "pair_guard_captions",
                 "pair_guard_scenes"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:  # None: per data source (data_defaults)
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

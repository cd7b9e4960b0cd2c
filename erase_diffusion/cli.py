"""`erase-diffusion`: generate, judge, erase, evaluate and serve the studio app from one command."""

import argparse
import os
import sys

from .errors import UsageError


def add_generate(sub):
    p = sub.add_parser("generate", help="Generate images with a Stable Diffusion pipeline (default: the miniature).")
    p.add_argument("--pretrained_model_name_or_path", default=None, help="Local diffusers pipeline dir (default: the built-in miniature).")
    p.add_argument("--prompt", action="append", required=True, help="Prompt; repeat for several (each gets --num_images images).")
    p.add_argument("--negative_prompt", default=None, help="Negative prompt for classifier-free guidance.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the first image; image k of a prompt uses seed+k.")
    p.add_argument("--num_images", type=int, default=1, help="Images per prompt.")
    p.add_argument("--num_inference_steps", type=int, default=20, help="Denoising steps.")
    p.add_argument("--guidance_scale", type=float, default=5.0, help="Classifier-free guidance scale.")
    p.add_argument("--height", type=int, default=None, help="Image height (default: the model's native size; on the miniature, 32).")
    p.add_argument("--width", type=int, default=None, help="Image width (default: the model's native size; on the miniature, 64 for a prompt naming two objects).")
    p.add_argument("--output", default="output.png", help="PNG path; several images are written as one grid.")
    p.add_argument("--scale", type=int, default=4, help="Nearest-neighbour upscaling of the saved PNG (32 px is tiny).")
    p.add_argument("--erased", default=None, help="Erasure dir from `erase-diffusion erase`: generate with its text encoder(s).")
    p.add_argument("--compare", action="store_true", help="With --erased: one PNG of original | erased columns, judged under each image.")
    p.add_argument("--strength", type=float, default=1.0, help="Erasure strength in [0, 1] (LoRA adapter scale, or weight blend).")


def run_generate(args):
    from .generate import load_pipeline, make_grid, save_atomic

    if args.num_inference_steps <= 0:
        raise UsageError(f"--num_inference_steps {args.num_inference_steps} must be a positive integer")
    if args.num_images <= 0:
        raise UsageError(f"--num_images {args.num_images} must be a positive integer")
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UsageError(f"--output {args.output!r}: directory {out_dir!r} does not exist")
    if args.compare and not args.erased:
        raise UsageError("--compare needs --erased OUT (the erasure to compare with the original)")
    prompts = [p for p in args.prompt for _ in range(args.num_images)]
    seeds = [args.seed + k for _ in args.prompt for k in range(args.num_images)]
    gen = dict(num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
               negative_prompt=args.negative_prompt, height=args.height, width=args.width)
    if args.compare:
        return write_comparison(args, prompts, seeds, gen)
    if args.erased:
        from pipelines import load_erased_pipeline

        pipe = load_erased_pipeline(base_of(args), args.erased, strength=args.strength)
    else:
        pipe = load_pipeline(args.pretrained_model_name_or_path)
    images = draw(pipe, base_of(args), prompts, seeds, gen)
    if len(images) == 1:
        w, h = images[0].size
        save_atomic(images[0].resize((w * args.scale, h * args.scale), resample=0), args.output)
    else:
        save_atomic(make_grid(images, cols=args.num_images, scale=args.scale), args.output)
    print(f"wrote {args.output} ({len(images)} image{'s' * (len(images) > 1)})")


def base_of(args):
    from .miniature import model_path

    return args.pretrained_model_name_or_path or model_path()


def draw(pipe, base, prompts, seeds, gen):
    """Images for the prompts; on the miniature without a size given, each prompt at its scene's size."""
    from .generate import generate, generate_scenes
    from .miniature import is_miniature

    if is_miniature(base) and gen["height"] is None and gen["width"] is None:
        return generate_scenes(pipe, prompts, seeds, **{k: v for k, v in gen.items() if k not in ("height", "width")})
    return generate(pipe, prompts, seeds, **gen)


def write_comparison(args, prompts, seeds, gen):
    """Rows: prompt x seed; columns: original | erased; under each image the judge's label and its probability."""
    from pipelines import paired_pipelines

    from .generate import make_grid, save_atomic
    from .evaluation.judge import Judge
    from .miniature import judge_path

    base = base_of(args)
    original, erased = paired_pipelines(base, args.erased, strength=args.strength)
    before, after = (draw(pipe, base, prompts, seeds, gen) for pipe in (original, erased))
    images = [im for pair in zip(before, after) for im in pair]
    labels = None
    if os.path.isdir(judge_path(base)):  # the judge knows the miniature's world only
        labels = [verdict_label(v) for v in Judge(judge_path(base)).classify_any(images)]
    save_atomic(make_grid(images, cols=2, labels=labels, scale=args.scale, header=["original", "erased"]), args.output)
    print(f"wrote {args.output}: original | erased for {len(prompts)} prompt/seed pair(s)")


def verdict_label(v):
    """What the judge saw, in a few characters: "star 0.98", or "star+circle" for a two-object scene."""
    return "+".join(v["shapes"]) if "shapes" in v else f"{v['shape']} {v['shape_prob']:.2f}"


def add_judge(sub):
    p = sub.add_parser("judge", help="Classify images into the miniature's shapes and colours with the independent judge.")
    p.add_argument("images", nargs="+", help="Image files.")
    p.add_argument("--judge_dir", default=None, help="Judge directory (default: the miniature's judge/).")


def run_judge(args):
    from .evaluation.judge import Judge, open_image

    for path in args.images:
        if not os.path.isfile(path):
            raise UsageError(f"image not found: {path!r}")
    images = [open_image(p) for p in args.images]
    judge = Judge(args.judge_dir)
    width = max(len(p) for p in args.images)
    print(f"{'image':<{width}}  shape      p(shape)  colour   p(colour)")
    for path, v in zip(args.images, judge.classify(images)):
        print(f"{path:<{width}}  {v['shape']:<9}  {v['shape_prob']:>8.3f}  {v['colour']:<7}  {v['colour_prob']:>9.3f}")


def add_export(sub):
    p = sub.add_parser("export", help="Write an erasure's text encoder(s) as one safetensors file in the original SD checkpoint layout.")
    p.add_argument("erased", help="Erasure dir from `erase-diffusion erase` (full weights or LoRA).")
    p.add_argument("--format", default="single_file", help="Output format; single_file: the original SD checkpoint's key layout (cond_stage_model.* / conditioner.embedders.*).")
    p.add_argument("--output", default=None, help="File to write (default: ERASED/text_encoders.sd_original.safetensors); must not exist.")
    p.add_argument("--pretrained_model_name_or_path", default=None, help="Base pipeline dir, to merge a LoRA erasure into (default: erasure.json's base_model).")


def run_export(args):
    from .export import export

    path = export(args.erased, args.format, args.output, args.pretrained_model_name_or_path)
    print(f"wrote {path}")


def add_cache(sub):
    from .retain_cache import DEFAULT_DIR

    p = sub.add_parser("cache", help="List, or clear, the cache of self-generated retain images that erasures reuse.")
    p.add_argument("--retain_cache_dir", default=DEFAULT_DIR, help="The cache (erase's --retain_cache_dir).")
    p.add_argument("--clear", action="store_true", help="Delete every cached entry.")


def run_cache(args):
    from .retain_cache import clear, describe

    entries = describe(args.retain_cache_dir)
    if args.clear:
        clear(args.retain_cache_dir)
        print(f"cleared {args.retain_cache_dir} ({sum(n for _, n, _ in entries)} entries)")
        return
    for root, n, size in entries:
        print(f"{os.path.relpath(root, args.retain_cache_dir)}  {n} concept(s)  {size / 2**20:.1f} MiB")
    print(f"{args.retain_cache_dir}: {sum(n for _, n, _ in entries)} cached concept(s)")


COMMANDS = {"generate": (add_generate, run_generate), "judge": (add_judge, run_judge), "export": (add_export, run_export),
            "cache": (add_cache, run_cache)}
# Subcommands whose flags belong to a script of their own: the CLI hands them the rest of the command line.
DELEGATED = {"erase": ("erase_diffusion.train", "Erase concepts (CLIPErase loop; same flags as erase_diffusion/train.py)."),
             "evaluate": ("erase_diffusion.evaluation.evaluate", "Evaluate an erasure: judged metrics, held-out phrasing, in-prompt specificity, the attack suite, CLIP tasks and a report."),
             "attack": ("erase_diffusion.evaluation.attack_suite", "Run the attack suite (discrete, soft prompt, concept inversion) against an erasure."),
             "app": ("app.studio", "Serve the Gradio studio: original vs erased side by side, erase and report tabs.")}


def quiet_loading():
    """Weight loading takes a blink at these sizes: its per-file bars would only bury the line that matters."""
    import logging

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that a config has no pretrained tag


def run_script(main_fn, parse_args, argv=None, report=None):
    """Entry point of the scripts behind `erase`, `evaluate` and `app`: quiet loading, then bad input as one
    `error:` line and exit 2; `report(args, result)` prints what the script wants said on success."""
    quiet_loading()
    try:
        args = parse_args(argv)
        result = main_fn(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report:
        report(args, result)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_loading()
    if argv and argv[0] in DELEGATED:
        import importlib

        return importlib.import_module(DELEGATED[argv[0]][0]).cli(argv[1:])
    parser = argparse.ArgumentParser(prog="erase-diffusion", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command][1](args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

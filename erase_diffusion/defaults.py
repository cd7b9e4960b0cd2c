"""What the erase flags left unset become, per data source and objective: the data amounts, the robustness levers and
the steps. Each default says why, with the measurement behind it (benchmarks/README.md)."""

from .miniature import world


ADVERSARIAL_EVERY = 2  # the default adversarial period where supported (--adversarial_every)
# Optimiser steps per erased concept (--max_train_steps) without the first-order set: at 250 one concept took 49 s
# instead of 60 s on 2 cores, but the kept cross drew wrong in purple; three concepts in 300 steps left 6 % of forget
# prompts and 75 % in-prompt, in 900 3 % and 97 % (benchmarks/README.md).
STEPS_PER_CONCEPT = 300
# On the renderer's data: the first-order prefix set and the two-object guard on the renderer's drawings, then in 250
# steps a concept. Over six shapes and four seeds 14 robust-erasure bars missed against 23 without them (soft-prompt ASR
# 2 % against 25 % on average; 12 of 24 erasures met every bar against 6) at 49-56 s an erasure (60 s on a slower hour:
# 1.4x the time without them); at 300 steps and 16 gradient draws 22 were missed in 59-66 s, and 200 steps or 2 inner
# attack steps did not do better (benchmarks/README.md, tenth and eleventh rounds).
# Its steps a concept and learning rate hold wherever the set runs, by name too: 160 steps at 1.6e-4 (about as far as
# 250 at 1e-4) over six shapes and four seeds missed 5 bars against 9 on the renderer's data (19 of 24 erasures meeting
# every bar against 16, the word search under its bar in all 24 against 19) and 15 against 14 by name, at ~0.6x the
# time: 45-55 s an erasure alone on an AVX-512 EPYC against ~80 s (renderer) and ~86 s (by name) (thirty-first round).
RENDERER_LEVERS = {"lambda_adversarial_linear": 300.0, "lambda_pair_guard": 10000.0, "steps_per_concept": 160,
                   "learning_rate": 1.6e-4}
# By name there are no renderer's drawings for the guard (on noise or the base's own drawings, before the contrast
# below, kept objects fell to 65-90 %). So the set's gradient has the kept images' projected out
# (--linear_gradient_contrast; at seed 0 kept objects beside the concept 35-50 % without it, 65-85 % with it) and the
# keep weights are doubled (80-95 %). Over six shapes and four seeds: 28 robust-erasure bars missed against 34 without
# the set, the soft prompt above its bar in 2 erasures against 16 (2 % against 28 % on average), but colour 95-98 % in
# 15 (benchmarks/README.md, twenty-first round).
# With the by-name templates on diagonals (every colour in the first images) each caption's gradient is read on images
# of its own colours (--linear_gradient_match): 27 bars missed against 36 without it (twenty-third round).
# The guard then reads the base pipeline's own drawings of the anchor beside each kept concept, cached with the retain
# set (--pair_guard_latents generated): over six shapes and four seeds 18 bars missed against 27, fewer at every seed
# (kept objects beside the concept under their bar in 8 erasures against 15, colour in 4 against 7), ~1.2x the time
# alone (benchmarks/README.md, twenty-fifth round).
NAME_LEVERS = {"lambda_adversarial_linear": 300.0, "lambda_preserve": 300.0, "lambda_anchor": 200.0,
               "lambda_pair_guard": 10000.0}
KEEP_WEIGHTS = {"lambda_preserve": 150.0, "lambda_anchor": 100.0}  # elsewhere (the flags' help strings say why)
# Data amounts when not given. Rendered images cost nothing; generated ones cost UNet evaluations, and 8 forget images,
# 40 retain images at 10 steps judged as well as 32 forget, 384 retain or 20 steps (benchmarks/README.md, the data
# curve: the image terms add nothing measurable on the miniature, so more images buy nothing).
RENDERED_DATA = {"num_forget_images": 192, "num_retain_images": 384, "data_inference_steps": 20}
GENERATED_DATA = {"num_forget_images": 8, "num_retain_images": 40, "data_inference_steps": 10}


def anchor_of(args, family):
    """The word a forget caption's concept becomes: --anchor, else the miniature's neutral blob, else none (the name
    dropped)."""
    return args.anchor if args.anchor is not None else (world.NEUTRAL if family == "miniature" else "")


def data_source(args, family):
    if args.data_source != "auto":
        return args.data_source
    return "folder" if args.forget_data_dir else ("renderer" if family == "miniature" else "generate")


def data_defaults(args, family):
    """Fills the data amounts left unset with the defaults of the run's data source."""
    defaults = GENERATED_DATA if data_source(args, family) == "generate" else RENDERED_DATA
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def lever_defaults(args, family):
    """Fills the levers, the steps and the learning rate left unset: the first-order set in fewer, larger steps; on the
    renderer's data with the guard on the renderer's drawings (which keeps the kept objects the set costs,
    RENDERER_LEVERS) and the name tied to the anchor's row; elsewhere with the kept images' gradient projected out and
    doubled keep weights, and where the base generates the data the guard on its own drawings (NAME_LEVERS) and the
    name tied to the anchor's row.
    The adversarial term runs where it is supported; the weights' moving average with the anchored objective."""
    if args.adversarial_every is None:
        args.adversarial_every = 0 if family == "sdxl" or args.objective == "paper" else ADVERSARIAL_EVERY
    if args.use_ema is None:  # the paper's objective stays the paper's method
        args.use_ema = args.objective == "anchored"
    renderer = data_source(args, family) == "renderer"
    if args.lambda_adversarial_linear is None:
        on = args.objective == "anchored" and bool(args.adversarial_every)
        args.lambda_adversarial_linear = (RENDERER_LEVERS if renderer else NAME_LEVERS)["lambda_adversarial_linear"] * on
    if args.linear_gradient_contrast is None:  # the renderer's drawings keep kept objects through the guard instead
        args.linear_gradient_contrast = not renderer and args.lambda_adversarial_linear > 0
    by_name = not renderer and args.lambda_adversarial_linear > 0 and args.linear_gradient_contrast
    if args.linear_gradient_match is None:  # by name each caption's gradient read on images of its own colours
        args.linear_gradient_match = by_name
    for name, weight in KEEP_WEIGHTS.items():
        if getattr(args, name) is None:
            setattr(args, name, NAME_LEVERS[name] if by_name else weight)
    # the base draws the anchor beside kept objects where the anchor is a word (elsewhere the default anchor is none)
    generated = data_source(args, family) == "generate" and bool(anchor_of(args, family))
    drawings = renderer or (generated and by_name)  # the guard's: the renderer's, or the base's by name beside the set
    if args.tie_names is None:  # a LoRA file carries no rows; by name only beside the set (the tie alone let the soft
        # prompt through, nineteenth round; beside the set and the guard on the base's drawings 14 bars missed over six
        # shapes and four seeds against 18, inversion 54 against 48 %, twenty-sixth round)
        args.tie_names = drawings and args.objective == "anchored" and not args.lora_rank
    if args.lambda_pair_guard is None:  # where there are drawings to read
        on = drawings and args.lambda_adversarial_linear > 0 and args.pair_prompts
        args.lambda_pair_guard = (RENDERER_LEVERS if renderer else NAME_LEVERS)["lambda_pair_guard"] if on else 0.0
    if args.pair_guard_latents is None:  # the renderer's drawings wherever it draws them, else the base's own
        drawn = "scenes" if renderer else ("generated" if generated else "noise")
        args.pair_guard_latents = drawn if args.lambda_pair_guard > 0 else "noise"
    with_set = args.lambda_adversarial_linear > 0
    if args.max_train_steps is None:
        steps = RENDERER_LEVERS["steps_per_concept"] if with_set else STEPS_PER_CONCEPT
        args.max_train_steps = steps * len(args.concept)
    if args.learning_rate is None:  # LoRA's low-rank updates need larger steps to move as far
        args.learning_rate = 1e-3 if args.lora_rank else (RENDERER_LEVERS["learning_rate"] if with_set else 1e-4)

"""What the levers default to per data source and objective, when the user leaves them unset."""

import pytest

from erase_diffusion.train import parse_args


@pytest.mark.parametrize("flags, expected", [
    # the renderer's data: the first-order set, the guard on its drawings, 160 steps a concept, the name tied
    ([], (300.0, 10000.0, "scenes", 160, True)),
    (["--concept", "star"], (300.0, 10000.0, "scenes", 320, True)),  # a second concept beside the triangle
    # by name: the first-order set with the guard on the base's own drawings, 160 steps a concept, the name tied
    (["--data_source", "generate"], (300.0, 10000.0, "generated", 160, True)),
    (["--data_source", "generate", "--no-linear_gradient_contrast"], (300.0, 0.0, "noise", 160, False)),
    (["--data_source", "generate", "--lambda_pair_guard", "0"], (300.0, 0.0, "noise", 160, True)),
    # without the adversarial term or on the paper's objective: none of them, 300 steps a concept
    (["--adversarial_every", "0"], (0.0, 0.0, "noise", 300, True)),
    (["--objective", "paper"], (0.0, 0.0, "noise", 300, False)),
    (["--lora_rank", "4"], (300.0, 10000.0, "scenes", 160, False)),  # a LoRA file carries no rows
    # the guard and the steps follow the set; what the user gives is kept
    (["--lambda_adversarial_linear", "0"], (0.0, 0.0, "noise", 300, True)),
    (["--lambda_adversarial_linear", "0", "--lambda_pair_guard", "5"], (0.0, 5.0, "scenes", 300, True)),
    (["--no-pair_prompts", "--no-tie_names"], (300.0, 0.0, "noise", 160, False)),
    (["--lambda_pair_guard", "0", "--max_train_steps", "7"], (300.0, 0.0, "noise", 7, True)),
    (["--data_source", "generate", "--lambda_adversarial_linear", "5", "--tie_names"],
     (5.0, 10000.0, "generated", 160, True)),
    (["--data_source", "generate", "--lambda_adversarial_linear", "0"], (0.0, 0.0, "noise", 300, False))])
def test_the_levers_and_steps_default_per_data_source(flags, expected):
    from erase_diffusion.defaults import lever_defaults

    args = parse_args(["--concept", "triangle", "--output_dir", "unused", *flags])
    lever_defaults(args, "miniature")
    assert (args.lambda_adversarial_linear, args.lambda_pair_guard, args.pair_guard_latents,
            args.max_train_steps, args.tie_names) == expected


@pytest.mark.parametrize("flags, expected", [
    ([], 1.6e-4), (["--data_source", "generate"], 1.6e-4),  # the first-order set's fewer, larger steps
    (["--adversarial_every", "0"], 1e-4), (["--objective", "paper"], 1e-4),
    (["--lambda_adversarial_linear", "0"], 1e-4),
    (["--lora_rank", "4"], 1e-3),  # low-rank updates move less per step
    (["--learning_rate", "3e-5"], 3e-5)])  # what the user gives is kept
def test_the_learning_rate_defaults_with_the_steps(flags, expected):
    from erase_diffusion.defaults import lever_defaults

    args = parse_args(["--concept", "triangle", "--output_dir", "unused", *flags])
    lever_defaults(args, "miniature")
    assert args.learning_rate == expected


@pytest.mark.parametrize("flags, expected", [
    # a real base's default anchor is empty (the name dropped): no anchor for the base to draw, no row to tie to
    ([], (0.0, "noise", False)),
    (["--anchor", "object"], (10000.0, "generated", True))])
def test_by_name_on_a_real_base_the_guard_draws_the_anchor_only_where_it_is_a_word(flags, expected):
    from erase_diffusion.defaults import lever_defaults

    args = parse_args(["--concept", "dog", "--output_dir", "unused", *flags])
    lever_defaults(args, "sd1")
    assert (args.lambda_pair_guard, args.pair_guard_latents, args.tie_names) == expected


@pytest.mark.parametrize("flags, expected", [
    ([], (False, False, 150.0, 100.0)),  # the renderer's data: the guard on its drawings keeps kept objects instead
    # by name: the contrast, the colour-matched gradient and the doubled keep weights
    (["--data_source", "generate"], (True, True, 300.0, 200.0)),
    (["--data_source", "generate", "--no-linear_gradient_match"], (True, False, 300.0, 200.0)),
    (["--data_source", "generate", "--no-linear_gradient_contrast"], (False, False, 150.0, 100.0)),
    (["--data_source", "generate", "--lambda_adversarial_linear", "0"], (False, False, 150.0, 100.0)),
    (["--data_source", "generate", "--lambda_preserve", "7"], (True, True, 7.0, 200.0)),  # what the user gives is kept
    (["--lambda_anchor", "3", "--linear_gradient_contrast"], (True, False, 150.0, 3.0))])
def test_the_contrast_and_keep_weights_default_per_data_source(flags, expected):
    from erase_diffusion.defaults import lever_defaults

    args = parse_args(["--concept", "triangle", "--output_dir", "unused", *flags])
    lever_defaults(args, "miniature")
    assert (args.linear_gradient_contrast, args.linear_gradient_match, args.lambda_preserve, args.lambda_anchor) == expected

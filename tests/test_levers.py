"""The robustness levers of the objective: each runs behind its flag, is recorded in erasure.json and the model card,
and does what it claims on the miniature's own encoder."""

import random
from types import SimpleNamespace

import pytest
import torch

import quick
from erase_diffusion.train import main, parse_args

QUICK = quick.TRIANGLE


def test_every_lever_runs_and_is_recorded_with_its_cost(tmp_path):
    out = tmp_path / "out"
    record = main(parse_args([*QUICK, "--output_dir", str(out), "--mine_neighbours", "--pair_prompts",
                              "--caption_noise", "0.3", "--suffix_captions", "16", "--adversarial_every", "2",
                              "--lambda_unet", "1", "--lambda_adversarial_unet", "1", "--unet_adversaries", "4",
                              "--lambda_pair_guard", "1",
                              "--pair_guard_captions", "2"]))["record"]
    assert all(record["levers"][k] for k in ("token_state_terms", "mine_neighbours", "pair_prompts", "adversarial",
                                             "adversarial_unet", "unet_term", "pair_guard"))
    assert record["levers"]["unet_adversaries"] == 4
    assert record["levers"]["caption_noise"] == 0.3 and "triangle" in record["neighbours"]
    assert record["levers"]["suffix_captions"] == 16
    assert record["levers"]["keep_unconditional"] and record["levers"]["adversarial_concept_weight"] == 0.3
    assert set(record["final_losses"]) >= {"forget", "retain", "consistency", "preserve", "anchor", "unet"}
    costs = record["costs"]
    # the UNet-aware term: 4 steps x 2 evaluations x 8 images; 2 attacks, each: the UNet-space adversaries' 4 inner
    # steps x 4 captions, the outer step on them (4 captions x 2), the two-object guard (2 captions x 2)
    assert costs["optimizer_steps"] == 4 and costs["unet_evals_training"] == 4 * 2 * 8 + 2 * (4 * 4 + 4 * 2 + 2 * 2)
    assert costs["text_encoder_forward_backward"] > 0 and costs["unet_evals_data"] == 0  # the renderer costs no UNet
    card = (out / "README.md").read_text()
    assert "mine_neighbours" in card and "unet_evals_training" in card
    counts = record["token_state_captions"]
    assert counts["forget"] == counts["anchored"] > 192 and counts["retain"] > 0


def test_every_retain_batch_holds_the_empty_prompt_once():
    from erase_diffusion.train import with_unconditional

    args = parse_args([*QUICK, "--output_dir", "unused"])
    for idx in (torch.tensor([5, 0, 9]), torch.tensor([5, 7, 9])):
        out = with_unconditional(args, idx)
        assert out[0] == 0 and (out == 0).sum() == 1 and set(out.tolist()) == {0, 5, 9} | set(idx.tolist())
    args = parse_args([*QUICK, "--output_dir", "unused", "--no-keep_unconditional"])
    assert with_unconditional(args, torch.tensor([5, 7])).tolist() == [5, 7]


def test_paper_objective_runs_none_of_them(tmp_path):
    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "out"), "--objective", "paper",
                              "--mine_neighbours", "--pair_prompts"]))["record"]
    assert not any(v for k, v in record["levers"].items() if k != "paper_terms") and record["levers"]["paper_terms"]
    assert set(record["final_losses"]) == {"forget", "retain", "consistency", "loss"}


def test_the_inner_attack_finds_inputs_that_bring_the_concept_states_back():
    import torch.nn.functional as F

    from erase_diffusion.adversarial import inner_attack
    from erase_diffusion.attacks.common import encode, token_embedding
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    model = enc.text_encoder
    ids, target_ids = enc.tokenize(["a red blob", "a blue blob"]), enc.tokenize(["a red triangle", "a blue circle"])
    with torch.no_grad():
        target = model(target_ids)[0]
        start = token_embedding(model)(ids)[:, 3]
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 3] = True  # "blob" -> free vector
    parts = [(ids[k:k + 1], mask[k:k + 1], start[k:k + 1], lambda s, k=k: F.mse_loss(s, target[k:k + 1]))
             for k in range(2)]
    together = inner_attack(model, parts, steps=30, lr=1e-2)
    alone = [inner_attack(model, [part], steps=30, lr=1e-2)[0] for part in parts]
    for k in range(2):  # one batch finds what each attack finds alone
        assert torch.allclose(together[k], alone[k], atol=1e-5)
        with torch.no_grad():
            before = ((model(ids[k:k + 1])[0] - target[k]) ** 2).mean()
            after = ((encode(model, ids[k:k + 1], together[k], mask[k:k + 1]) - target[k]) ** 2).mean()
        assert after < 0.5 * before
    assert all(p.grad is None for p in model.parameters())  # the attack never touched the encoder's own gradients


def test_the_prefix_term_unlearns_towards_the_anchored_caption_behind_a_filler_prefix():
    """Its target keeps every caption word at its own position: the original's states of "<start> ! ! ! ! ! a red
    blob", not of "a red blob" moved five positions on (which taught the encoder to shift kept captions too)."""
    from accelerate import Accelerator

    from erase_diffusion.adversarial import PREFIX
    from erase_diffusion.attacks.common import PLACEHOLDER
    from erase_diffusion.erasure_setup import prepare
    from erase_diffusion.flag_checks import validate_args

    targets = {}
    for cached in (True, False):
        args = parse_args([*QUICK, "--output_dir", "unused", "--adversarial_every", "2",
                           "--cache_features" if cached else "--no-cache_features"])
        validate_args(args)
        setup = prepare(args, Accelerator(cpu=True))
        enc, cache = setup.encoders[0], setup.cache[0]
        targets[cached] = cache.adversarial_targets(torch.arange(3)).prefix_anchor
    anchored = setup.text["anchored"][:3]
    with torch.no_grad():
        expected = enc.text_encoder(enc.tokenize([" ".join([PLACEHOLDER] * PREFIX + [c]) for c in anchored]))[0]
    torch.testing.assert_close(targets[True], targets[False])
    # the encoder is causal: every position the prefixed ids keep (all but the last PREFIX) matches
    torch.testing.assert_close(targets[True][:, :-PREFIX], expected[:, :-PREFIX], atol=1e-5, rtol=1e-4)


def test_the_outer_step_through_the_unet_is_zero_only_where_the_unet_reads_the_target():
    """--lambda_adversarial_unet: the prefixed states are judged by what the frozen UNet predicts from them, and its
    gradient reaches the states (so the encoder that made them)."""
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path, world
    from erase_diffusion.unet_term import UNetTerm

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    with torch.no_grad():
        target, other = enc.text_encoder(enc.tokenize(["a red blob", "a red triangle"]))[0].split(1)
    images = [world.render("triangle", "red", random.Random(k)) for k in range(4)]
    term = UNetTerm(model_path(), images, target.expand(4, -1, -1), batch_size=4, seed=0)
    assert term.prefix_loss(target.expand(4, -1, -1), target.expand(4, -1, -1)) < 1e-10
    states = other.expand(4, -1, -1).clone().requires_grad_(True)
    loss = term.prefix_loss(states, target.expand(4, -1, -1))
    loss.backward()
    assert loss > 1e-4 and states.grad.abs().sum() > 0 and term.evaluations == 2 * 4 + 2 * 4
    assert all(p.grad is None for p in term.unet.parameters())  # the UNet stays frozen


def test_the_unet_parts_run_on_every_nth_attack_only(tmp_path):
    """--unet_adversarial_every 2: of the attacks at steps 0 and 2, only the first runs the UNet."""
    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "out"), "--adversarial_every", "2",
                              "--lambda_adversarial_unet", "1", "--unet_adversaries", "4", "--lambda_pair_guard", "1",
                              "--pair_guard_captions", "2", "--unet_adversarial_every", "2"]))["record"]
    assert record["costs"]["unet_evals_training"] == 4 * 4 + 4 * 2 + 2 * 2


def test_the_linear_adversaries_see_the_unet_to_first_order():
    """--lambda_adversarial_linear: the UNet's concept gradient at the anchored states points away from the concept's
    states (moving towards them lowers the UNet's loss on the concept's images, to first order and in fact), and the
    set's inner attack moves prefixed states down it."""
    from erase_diffusion.adversarial import PREFIX, Adversaries, prefixed
    from erase_diffusion.attacks.common import placeholder_id
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path, world
    from erase_diffusion.unet_term import UNetTerm

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    with torch.no_grad():
        blob, tri = enc.text_encoder(enc.tokenize(["a red blob", "a red triangle"]))[0].split(1)
    images = [world.render("triangle", "red", random.Random(k)) for k in range(8)]
    term = UNetTerm(model_path(), images, blob, batch_size=1, seed=0)
    g = term.concept_gradients(torch.cat([blob, blob]), samples=16)
    assert g.shape == (2, *blob.shape[1:]) and term.evaluations == 2 * 16
    assert all(p.grad is None for p in term.unet.parameters())  # the UNet stays frozen
    objective = term.denoising_objective(64)
    with torch.no_grad():  # the same draws for both: the triangle's states fit its images better
        assert objective(tri.expand(64, -1, -1)) < objective(blob.expand(64, -1, -1))
    assert ((tri - blob) * g[0]).sum() < 0
    ids = enc.tokenize(["a red triangle", "a blue triangle"])
    adversaries = Adversaries(ids, torch.tensor([9999]), enc.text_encoder, torch.Generator().manual_seed(0))
    adversaries.gradients = g
    before = adversaries.prefix_linear.clone()
    with torch.no_grad():
        states = [enc.text_encoder(t)[0] for t in (ids, enc.tokenize(["a red blob", "a blue blob"]))]
        goal = enc.text_encoder(prefixed(enc.tokenize(["a red blob", "a blue blob"]), PREFIX,
                                         placeholder_id(enc.tokenizer))[0])[0]
    targets = SimpleNamespace(forget=states[0], anchor=states[1], prefix_anchor=goal)
    first, second = (adversaries.loss(enc.text_encoder, ids, torch.arange(2), placeholder_id(enc.tokenizer), targets,
                                      4, 1e-2) for _ in range(2))
    assert not torch.equal(before, adversaries.prefix_linear)  # persisted, like every adversary
    assert second["adversarial_linear"] > first["adversarial_linear"] > 0  # the attack gains what the UNet reads
    assert first["adversarial_linear_states"].requires_grad  # the outer step reaches the encoder


def test_the_linear_adversaries_run_in_an_erasure_and_cost_unet_evaluations_once(tmp_path):
    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "out"), "--adversarial_every", "1",
                              "--lambda_adversarial_linear", "10", "--linear_gradient_samples", "2",
                              "--lambda_pair_guard", "0", "--linear_gradient_match"]))["record"]
    # the last step attacked too, so its losses are the ones recorded
    assert {"adversarial_linear", "adversarial_linear_states"} <= set(record["final_losses"])
    assert record["levers"]["adversarial_linear"] == 10 and record["levers"]["linear_gradient_match"]
    costs = record["costs"]
    # 2 draws per attacked caption, before training; nothing through the UNet in the loop
    assert costs["unet_evals_linearisation"] > 0 and costs["unet_evals_linearisation"] % 2 == 0
    assert costs["unet_evals_training"] == 0 and "linearisation" in record["seconds"]


def test_the_suffix_set_sits_after_each_caption_s_words_and_runs_in_an_erasure(tmp_path):
    from erase_diffusion.adversarial import PREFIX, suffixed
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    end = enc.tokenizer.eos_token_id
    ids = enc.tokenize(["a red triangle", "a picture of a blue triangle on a plain background"])
    out, mask = suffixed(ids, PREFIX, 7, end)
    for row, new, m in zip(ids, out, mask):  # the caption's words, the filler, then the end token
        e = int((row == end).nonzero()[0])
        assert new[:e].tolist() == row[:e].tolist() and new[e:e + PREFIX].tolist() == [7] * PREFIX
        assert new[e + PREFIX] == end and m.sum() == PREFIX and m[e:e + PREFIX].all()
    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "out"), "--adversarial_every", "1",
                              "--lambda_adversarial_suffix", "10", "--lambda_adversarial_linear", "0"]))["record"]
    assert "adversarial_suffix" in record["final_losses"]  # the last step attacked too
    assert record["levers"]["adversarial_suffix"] == 10 and record["levers"]["suffix_target"] == "filler"


def test_the_carried_suffix_target_is_what_the_original_makes_of_the_same_vectors_after_the_anchored_caption():
    import copy

    import torch.nn.functional as F

    from erase_diffusion.adversarial import PREFIX, Adversaries, suffixed
    from erase_diffusion.attacks.common import encode, placeholder_id
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    filler, end = placeholder_id(enc.tokenizer), enc.tokenizer.eos_token_id
    ids, anchored = enc.tokenize(["a red triangle", "a blue triangle"]), enc.tokenize(["a red blob", "a blue blob"])
    original = copy.deepcopy(enc.text_encoder).eval().requires_grad_(False)
    with torch.no_grad():  # the encoder "under erasure" drifts away from the original, as training moves it
        for p in enc.text_encoder.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        states = [original(t)[0] for t in (ids, anchored)]
        goal_filler = original(suffixed(anchored, PREFIX, filler, end)[0])[0]
    targets = SimpleNamespace(forget=states[0], anchor=states[1], prefix_anchor=states[1], suffix_anchor=goal_filler)
    losses = {}
    for target in ("filler", "carried"):
        adversaries = Adversaries(ids, torch.tensor([9999]), enc.text_encoder, torch.Generator().manual_seed(0))
        adversaries.suffixed = suffixed(ids, PREFIX, filler, end)
        if target == "carried":
            adversaries.carried = (original, suffixed(anchored, PREFIX, filler, end))
        losses[target] = adversaries.loss(enc.text_encoder, ids, torch.arange(2), filler, targets, 0, 1e-2)
    vectors = adversaries.suffix.reshape(-1, adversaries.suffix.shape[-1])  # 0 inner steps: where they started
    (a_ids, a_mask), (s_ids, s_mask) = adversaries.carried[1], adversaries.suffixed
    with torch.no_grad():
        erased = encode(enc.text_encoder, s_ids, vectors, s_mask)
        carried = encode(original, a_ids, vectors, a_mask)
    assert torch.allclose(losses["carried"]["adversarial_suffix"], F.mse_loss(erased, carried))
    assert torch.allclose(losses["filler"]["adversarial_suffix"], F.mse_loss(erased, goal_filler))
    assert not torch.allclose(carried, goal_filler)  # the vectors' meaning is carried, not replaced by filler
    assert losses["carried"]["adversarial_suffix"].requires_grad  # the outer step reaches the encoder


def test_the_word_set_appends_the_data_s_own_word_nearest_the_concept_and_unlearns_it_to_the_anchored_twin(tmp_path):
    import copy

    import torch.nn.functional as F

    from erase_diffusion.adversarial import Adversaries, appended
    from erase_diffusion.attacks.common import encode
    from erase_diffusion.erasure_setup import word_ids
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path, world

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    end = enc.tokenizer.eos_token_id
    captions = ["a red triangle", "a picture of a blue wedge on a plain background"]
    text = {"forget": captions + ["a red triangle and a green circle"], "retain": ["a yellow star", ""]}
    words = word_ids(enc, text, ["triangle", "wedge", "blob"])
    spelled = {enc.tokenizer.decode([w]).strip() for w in words.tolist()}
    assert {"red", "green", "circle", "picture", "star", "and"} <= spelled  # the captions' own words
    held_out = {w for ws in world.HELD_OUT_PARAPHRASES.values() for p in ws for w in p.split()}
    assert not spelled & ({"triangle", "wedge", "blob"} | held_out)  # never a concept's name, the anchor or held out
    ids, anchored = enc.tokenize(captions), enc.tokenize(["a red blob", "a picture of a blue blob on a plain background"])
    original = copy.deepcopy(enc.text_encoder).eval().requires_grad_(False)
    with torch.no_grad():  # the encoder "under erasure" drifts away from the original, as training moves it
        for p in enc.text_encoder.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
        plain = original(ids)[0]
    adversaries = Adversaries(ids, torch.tensor([9999]), enc.text_encoder, torch.Generator().manual_seed(0))
    adversaries.words = (words, original, anchored, end)
    for step in range(2):  # each step appends one more word: the one whose states come nearest the plain caption's
        before = adversaries.word_suffix.clone()
        loss = adversaries.word_loss(enc.text_encoder, ids, torch.arange(2), plain)
        found = adversaries.word_suffix
        for i in range(2):
            assert found[i, :step].tolist() == before[i, :step].tolist() and found[i, step] in words
            options = torch.stack([torch.cat([found[i, :step], w.view(1), found[i, step + 1:]]) for w in words])
            with torch.no_grad():
                states = enc.text_encoder(appended(ids[i].expand(len(words), -1), options, end)[0])[0]
            assert words[((states - plain[i]) ** 2).mean((1, 2)).argmin()] == found[i, step]
    with torch.no_grad():
        goal = original(appended(anchored, found, end)[0])[0]
        erased = encode(enc.text_encoder, appended(ids, found, end)[0])
    assert torch.allclose(loss, F.mse_loss(erased, goal)) and loss.requires_grad
    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "out"), "--adversarial_every", "1",
                              "--lambda_adversarial_words", "10", "--lambda_adversarial_linear", "0"]))["record"]
    assert record["final_losses"]["adversarial_words"] > 0 and record["levers"]["adversarial_words"] == 10


@pytest.mark.parametrize("flags, message", [
    (["--adversarial_every", "0", "--lambda_adversarial_linear", "5"],
     "--lambda_adversarial_linear 5.0 is a set of the adversarial term: it needs --adversarial_every > 0"),
    (["--adversarial_every", "0", "--lambda_adversarial_suffix", "5"],
     "--lambda_adversarial_suffix 5.0 is a set of the adversarial term: it needs --adversarial_every > 0"),
    (["--adversarial_every", "0", "--lambda_adversarial_words", "5"],
     "--lambda_adversarial_words 5.0 is a set of the adversarial term: it needs --adversarial_every > 0"),
    (["--adversarial_every", "2", "--suffix_target", "carried"],
     "--suffix_target carried sets what the suffix set unlearns to: it needs --lambda_adversarial_suffix > 0"),
    (["--adversarial_every", "2", "--lambda_adversarial_linear", "5", "--linear_gradient_samples", "0"],
     "--linear_gradient_samples 0 must be a positive integer"),
    (["--hard_pairs", "-1"], "--hard_pairs -1 must be >= 0"),
    (["--tie_names", "--lora_rank", "4"], "--tie_names sets the name's token-embedding row, which a LoRA file \\(--lora_rank 4\\)"),
    (["--adversarial_every", "2", "--lambda_pair_guard", "0", "--pair_guard_latents", "scenes"],
     "--pair_guard_latents scenes sets what the two-object guard reads: it needs --lambda_pair_guard > 0"),
    (["--adversarial_every", "2", "--lambda_pair_guard", "5", "--pair_guard_latents", "scenes", "--data_source",
      "generate"], "--pair_guard_latents scenes .* needs --data_source renderer \\(got generate\\)"),
    (["--adversarial_every", "2", "--lambda_pair_guard", "5", "--pair_guard_latents", "generated"],
     "--pair_guard_latents generated .* needs --data_source generate \\(got renderer\\)"),
    (["--adversarial_every", "2", "--lambda_pair_guard", "5", "--pair_guard_latents", "generated", "--data_source",
      "generate", "--anchor", ""], "--pair_guard_latents generated draws the anchor .* needs a named --anchor"),
    (["--adversarial_every", "0", "--lambda_adversarial_unet", "1"],
     "--lambda_adversarial_unet 1.0 .* needs --adversarial_every > 0"),
    (["--adversarial_every", "2", "--lambda_adversarial_unet", "0", "--unet_adversaries", "8"],
     "--unet_adversaries 8 are unlearnt by the outer step .* need --lambda_adversarial_unet > 0"),
    (["--adversarial_every", "0", "--lambda_pair_guard", "5"],
     "--lambda_pair_guard 5.0 runs on the adversarial term's steps .* needs --adversarial_every > 0, --pair_prompts"),
    (["--adversarial_every", "2", "--no-pair_prompts", "--lambda_pair_guard", "5"],
     "--lambda_pair_guard 5.0 .* reads two-object captions: it needs .* --pair_prompts")])
def test_the_outer_step_and_its_parts_need_what_they_build_on(tmp_path, flags, message):
    from erase_diffusion.errors import UsageError

    with pytest.raises(UsageError, match=message):
        main(parse_args([*QUICK, "--output_dir", str(tmp_path / "out"), *flags]))
    assert not (tmp_path / "out").exists()

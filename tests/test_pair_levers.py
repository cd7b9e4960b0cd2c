"""The two-object levers: kept objects beside the concept, inside a prompt that names it. The guard through the frozen
UNet, the anchor term again on two-object captions (at their padding, or at every position), and hard pairs."""

import random

import pytest
import torch

import quick
from erase_diffusion.train import main, parse_args

QUICK = quick.TRIANGLE


def test_the_two_object_guard_reads_wide_scenes_and_is_zero_only_at_the_anchored_caption():
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path, world
    from erase_diffusion.unet_term import UNetTerm

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    with torch.no_grad():
        target, other = enc.text_encoder(enc.tokenize(["a red blob and a blue circle",
                                                       "a blue circle and a red blob"]))[0].split(1)
    images = [world.render("triangle", "red", random.Random(k)) for k in range(2)]
    term = UNetTerm(model_path(), images, target.expand(2, -1, -1), batch_size=2, seed=0, pair_width=2)
    seen = []
    hook = term.unet.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    assert term.pair_guard(target.expand(2, -1, -1), target.expand(2, -1, -1)) < 1e-10
    hook.remove()
    height, width = term.latents.shape[-2:]
    assert seen and all(shape[-2:] == (height, 2 * width) for shape in seen)
    states = other.expand(2, -1, -1).clone().requires_grad_(True)
    loss = term.pair_guard(states, target.expand(2, -1, -1))  # the same objects, the layout swapped
    loss.backward()
    assert loss > 1e-4 and states.grad.abs().sum() > 0 and term.evaluations == 2 * 2 + 2 * 2


def test_the_guard_on_drawn_scenes_noises_each_captions_own_drawing(monkeypatch):
    """--pair_guard_latents scenes: every two-object forget caption gets the renderer's drawing of its anchored twin,
    and the guard noises that caption's drawing, not another's and not pure noise."""
    from erase_diffusion.erasure_setup import pair_scenes
    from erase_diffusion.evaluation.judge import Judge
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, judge_path, model_path, world
    from erase_diffusion.unet_term import UNetTerm, encode_latents

    forget = ["a red triangle", "a red triangle and a blue circle", "a green square and a yellow triangle"]
    anchored = ["a red blob", "a red blob and a blue circle", "a green square and a yellow blob"]
    scenes = pair_scenes(forget, anchored, seed=0)
    assert sorted(scenes) == [1, 2] and all(im.size == world.PAIR_SIZE for im in scenes.values())
    verdicts = Judge(judge_path(model_path())).classify_scenes([scenes[1], scenes[2]])
    assert [[(h["shape"], h["colour"]) for h in (v["left"], v["right"])] for v in verdicts] == [
        [("blob", "red"), ("circle", "blue")], [("square", "green"), ("blob", "yellow")]]
    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    with torch.no_grad():
        target = enc.text_encoder(enc.tokenize(anchored[1:]))[0]
    images = [world.render("triangle", "red", random.Random(k)) for k in range(2)]
    term = UNetTerm(model_path(), images, target, batch_size=2, seed=0, pair_width=2, pair_scenes=scenes)
    assert not term.scene_chunks  # nothing encoded before the guard reads it
    drawn = term.scene_latents([1, 2])
    assert drawn.shape[-1] == 2 * term.latents.shape[-1]
    assert torch.equal(drawn, encode_latents(term.vae, term.scene_pixels))  # as encoding every scene at once would
    clean = []
    add_noise = term.scheduler.add_noise
    monkeypatch.setattr(term.scheduler, "add_noise", lambda x0, noise, t: clean.append(x0) or add_noise(x0, noise, t))
    assert term.pair_guard(target.flip(0), target.flip(0), idx=torch.tensor([2, 1])) < 1e-10
    assert torch.equal(clean[0], drawn.flip(0))  # caption 2's drawing first, then caption 1's
    loss = term.pair_guard(target, target.flip(0), idx=torch.tensor([1, 2]))  # each caption against the other's target
    assert loss > 1e-4 and term.evaluations == 2 * 2 + 2 * 2


def test_the_guard_on_drawn_scenes_runs_in_an_erasure_and_is_recorded(tmp_path):
    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "out"), "--adversarial_every", "2",
                              "--lambda_pair_guard", "1", "--pair_guard_captions", "2",
                              "--pair_guard_latents", "scenes", "--caption_noise", "0.5"]))["record"]
    assert record["levers"]["pair_guard"] and record["levers"]["pair_guard_latents"] == "scenes"
    assert record["costs"]["unet_evals_training"] == 2 * (2 * 2)  # 2 attacks x 2 captions x 2 evaluations


def test_the_guard_reads_only_captions_it_has_a_drawing_of():
    from erase_diffusion.erasure_setup import pair_scenes
    from erase_diffusion.miniature import model_path, world
    from erase_diffusion.unet_term import UNetTerm

    # caption noise dropped the kept shape's name: no second object to draw, so no scene, and the guard skips it
    scenes = pair_scenes(["a red triangle and a blue", "a red triangle and a blue circle"],
                         ["a red blob and a blue", "a red blob and a blue circle"], seed=0)
    assert sorted(scenes) == [1]
    images = [world.render("triangle", "red", random.Random(0))]
    states = torch.zeros(1, 32, 128)
    drawn = UNetTerm(model_path(), images, states, batch_size=1, seed=0, pair_width=2, pair_scenes=scenes)
    noise = UNetTerm(model_path(), images, states, batch_size=1, seed=0, pair_width=2)
    assert drawn.guards(1) and not drawn.guards(0) and noise.guards(0) and noise.guards(1)


@pytest.mark.parametrize("flag, term", [("--lambda_pair_padding", "pair_padding"),
                                        ("--lambda_pair_anchor", "pair_anchor")])
def test_the_anchor_term_again_on_two_object_captions_runs_and_is_recorded(tmp_path, flag, term):
    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "out"), flag, "10"]))["record"]
    assert record["final_losses"][term] > 0 and record["levers"][term] == 10


def test_the_pair_anchor_weight_adds_to_the_anchor_weight_on_its_rows_alone():
    from erase_diffusion.losses import anchor_loss, rows_anchor_loss

    new, target = torch.randn(4, 7, 5, requires_grad=True), torch.randn(4, 7, 5)
    assert torch.allclose(rows_anchor_loss(new, target, [0, 1, 2, 3]), anchor_loss(new, target))
    # normalised by the whole batch, as the anchor term is: a weight w on rows 1 and 3 is the anchor weight plus w there
    assert torch.allclose(rows_anchor_loss(new, target, [1, 3]), anchor_loss(new[[1, 3]], target[[1, 3]]) / 2)
    rows_anchor_loss(new, target, [1, 3]).backward()
    assert new.grad[[0, 2]].abs().sum() == 0 and new.grad[[1, 3]].abs().sum() > 0
    per_row = torch.autograd.grad(anchor_loss(new, target), new)[0]
    assert torch.allclose(new.grad[[1, 3]], per_row[[1, 3]])  # the same pull as the anchor term's on those rows


def test_hard_pairs_name_the_kept_concepts_nearest_each_concept_and_are_recorded(tmp_path):
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path, world
    from erase_diffusion.neighbours import nearest_kept, pooled

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    for concept in world.SHAPES:
        kept = [s for s in world.SHAPES if s != concept]
        sims = (pooled(enc, [f"a {concept}"]) @ pooled(enc, [f"a {k}" for k in kept]).T)[0].tolist()
        picks = nearest_kept(enc, [concept], kept, 2)
        assert len(picks) == 2 and min(sims[kept.index(p)] for p in picks) >= max(
            s for k, s in zip(kept, sims) if k not in picks)
    assert nearest_kept(enc, ["circle"], ["heart", "square"], 0) == []
    record = main(parse_args([*QUICK, "--output_dir", str(tmp_path / "out"), "--hard_pairs", "1"]))["record"]
    kept = record["retain_concepts"]
    assert record["levers"]["hard_pairs"] == 1 and record["hard_pair_partners"] == nearest_kept(enc, ["triangle"], kept, 1)

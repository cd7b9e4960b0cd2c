"""What makes the loop fast and lean changes nothing it computes: distinct-caption encoding, Adam inside the
backward pass, training only the token rows captions use, dropping the vision tower after caching, pinning glibc's
mmap threshold only where it pays."""

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import quick
from erase_diffusion import erasure_setup
from erase_diffusion.errors import UsageError
from erase_diffusion.train import main, parse_args
from erase_diffusion.used_rows import UsedRowsEmbedding, tied_ids, untied

QUICK = ["--concept", "triangle", "--max_train_steps", "10", *quick.QUICK]


def test_each_distinct_caption_is_encoded_once_with_the_same_outputs_and_gradients():
    from erase_diffusion.families import load_encoders
    from erase_diffusion.miniature import clip_path, model_path

    enc = load_encoders(model_path(), "miniature", [clip_path()])[0]
    ids = enc.tokenize(["a red triangle", "a blue circle", "a red triangle", "a star", "a blue circle"])
    outputs = {}
    for name, fn in (("dedup", enc.text), ("every row", enc._text_outputs)):
        enc.text_encoder.zero_grad()
        states, emb = fn(enc.text_encoder, ids)
        ((states ** 2).sum() + emb.sum()).backward()
        grads = [p.grad.clone() for p in enc.text_encoder.parameters()]
        outputs[name] = (states.detach(), emb.detach(), grads)
    (s1, e1, g1), (s2, e2, g2) = outputs["dedup"], outputs["every row"]
    assert torch.allclose(s1, s2, atol=1e-5) and torch.allclose(e1, e2, atol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(g1, g2))


def run(out, *flags):
    main(parse_args([*QUICK, "--output_dir", str(out), *flags]))
    return load_file(out / "text_encoder" / "model.safetensors")


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_optimizer_in_backward_gives_the_same_weights_and_ordinary_checkpoints(tmp_path):
    plain = run(tmp_path / "plain", "--checkpointing_steps", "0")
    in_backward = run(tmp_path / "in_backward", "--optimizer_in_backward", "--checkpointing_steps", "5")
    assert same(plain, in_backward)
    # its checkpoint is an ordinary Adam one: resumed without the flag, the run ends at the same weights
    shutil.copytree(tmp_path / "in_backward" / "checkpoints", tmp_path / "resumed" / "checkpoints")
    resumed = run(tmp_path / "resumed", "--resume_from_checkpoint", "latest", "--checkpointing_steps", "0")
    assert json.load(open(tmp_path / "resumed" / "erasure.json"))["concepts"] == ["triangle"]
    assert same(plain, resumed)


def test_training_only_the_used_token_rows_ends_at_the_whole_tables_weights(tmp_path, monkeypatch):
    from erase_diffusion.miniature import model_path

    flags = ["--checkpointing_steps", "0", "--no-tie_names"]  # the tie lives in the used rows' table
    used_rows = run(tmp_path / "used_rows", *flags)
    monkeypatch.setattr(erasure_setup, "train_used_rows", lambda *a: None)  # the whole table as one parameter
    whole = run(tmp_path / "whole", *flags)
    assert same(used_rows, whole)  # same keys too: the saved encoder is an ordinary CLIPTextModel
    key = "text_model.embeddings.token_embedding.weight"  # the hub's key layout, as every saved encoder is
    base = load_file(f"{model_path()}/text_encoder/model.safetensors")[key]
    moved = (used_rows[key] != base).any(1)
    assert 0 < int(moved.sum()) < len(moved) // 2  # the rows the captions use moved, the rest of the table did not


def test_used_rows_embedding_reads_frozen_rows_for_other_prompts_and_merges_back():
    table = torch.nn.Embedding(10, 4)
    original = table.weight.detach().clone()
    emb = UsedRowsEmbedding(table, torch.tensor([[1, 3, 3, 7]]))
    ids = torch.tensor([[0, 1, 3, 9, 7]])
    assert torch.equal(emb(ids), original[ids])
    with torch.no_grad():
        emb.rows += 1.0  # a "trained" update of rows 1, 3, 7
    assert torch.equal(emb(ids), original[ids] + torch.tensor([0.0, 1, 1, 0, 1]).view(1, 5, 1))
    merged = emb.merged()
    assert isinstance(merged, torch.nn.Embedding)
    assert torch.equal(merged.weight[[1, 3, 7]], original[[1, 3, 7]] + 1) and torch.equal(merged.weight[[0, 2, 9]], original[[0, 2, 9]])


def test_used_rows_embedding_ties_aliased_tokens_to_one_row_in_training_and_when_merged():
    table = torch.nn.Embedding(10, 4)
    original = table.weight.detach().clone()
    emb = UsedRowsEmbedding(table, torch.tensor([[1, 3, 5]]), alias=(torch.tensor([3]), 5))
    ids = torch.tensor([[1, 3, 5, 9]])
    assert torch.equal(emb(ids), original[torch.tensor([[1, 5, 5, 9]])])
    assert emb.row_ids.tolist() == [1, 5]  # token 3 has no row of its own to train
    with torch.no_grad():
        emb.rows += 1.0
    merged = emb.merged()
    assert torch.equal(merged.weight[3], original[5] + 1) and torch.equal(merged.weight[5], original[5] + 1)
    assert torch.equal(merged(ids), emb(ids))  # the saved table reads the tie as training did


def test_untied_reads_the_tied_tokens_own_original_rows_for_one_forward():
    table = torch.nn.Embedding(10, 4)
    original = table.weight.detach().clone()
    emb = UsedRowsEmbedding(table, torch.tensor([[1, 3, 5]]), alias=(torch.tensor([3]), 5))
    with torch.no_grad():
        emb.rows += 1.0
    encoder = SimpleNamespace(embeddings=SimpleNamespace(token_embedding=emb))
    ids = torch.tensor([[1, 3, 5]])
    assert tied_ids(encoder).tolist() == [3]
    with untied(encoder):
        assert torch.equal(emb(ids), torch.stack([original[1] + 1, original[3], original[5] + 1])[None])
    assert torch.equal(emb(ids)[0, 1], original[5] + 1)  # tied again after


def test_resuming_with_other_captions_names_the_mismatch(tmp_path):
    # without the mined vocabulary the captions use only the world's words they name: fewer retain words, fewer rows
    narrow = ["--no-mine_neighbours", "--vocabulary_captions", "0"]
    run(tmp_path / "out", "--checkpointing_steps", "5", *narrow)
    with pytest.raises(UsageError, match="token_embedding.rows of shape"):
        run(tmp_path / "out", "--resume_from_checkpoint", "checkpoint-5", "--retain_concepts", "square", *narrow)


MAPPED = """
import os, sys
from erase_diffusion import erasure_setup, flag_checks, train
from erase_diffusion.miniature import clip_path
weights = os.path.realpath(os.path.join(clip_path(), "model.safetensors"))
mapped = lambda: weights in open("/proc/self/maps").read()
load = erasure_setup.load_encoders
seen = []
def spy(*a):
    encoders = load(*a)
    seen.append(mapped())
    return encoders
erasure_setup.load_encoders = spy
args = train.parse_args(["--concept", "triangle", "--output_dir", sys.argv[1], *sys.argv[2:]])
flag_checks.validate_args(args)
from accelerate import Accelerator
setup = erasure_setup.prepare(args, Accelerator())
import gc; gc.collect()
print(seen[0], mapped(), setup.encoders[0].vision is None and setup.encoders[0].visual_projection is None)
"""


def test_caching_releases_the_vision_tower_and_its_memory_map(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the process's mappings from /proc/self/maps (Linux only)")
    res = subprocess.run([sys.executable, "-c", MAPPED, str(tmp_path / "out"), *quick.QUICK], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    before, after, dropped = res.stdout.split()[-3:]
    assert (before, after, dropped) == ("True", "False", "True"), res.stdout


def test_mmap_threshold_is_pinned_only_for_large_models_on_cpu():
    from erase_diffusion.host_memory import pin_mmap_threshold

    assert not pin_mmap_threshold(600_000, "cpu")  # the miniature: would only add page faults
    assert not pin_mmap_threshold(123_000_000, "cuda")
    if sys.platform.startswith("linux"):  # in a child process: the pin would slow the rest of this test session
        code = "from erase_diffusion.host_memory import pin_mmap_threshold; print(pin_mmap_threshold(123_000_000, 'cpu'))"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert res.stdout.strip() == "True", res.stderr


def test_the_moving_average_is_what_is_saved_and_resumes_exactly(tmp_path):
    last = run(tmp_path / "last", "--no-use_ema", "--checkpointing_steps", "5")
    ema = run(tmp_path / "ema", "--checkpointing_steps", "5")  # on by default
    assert not same(last, ema)  # the average of the last steps, not the last step
    assert json.load(open(tmp_path / "ema" / "erasure.json"))["levers"]["ema_decay"] == 0.99
    longer = run(tmp_path / "longer", "--ema_power", "0.75", "--checkpointing_steps", "0")  # a longer window
    assert not same(ema, longer) and not same(last, longer)
    assert json.load(open(tmp_path / "longer" / "erasure.json"))["levers"]["ema_power"] == 0.75
    shutil.copytree(tmp_path / "ema" / "checkpoints", tmp_path / "resumed" / "checkpoints")
    resumed = run(tmp_path / "resumed", "--resume_from_checkpoint", "latest", "--checkpointing_steps", "0")
    assert same(ema, resumed)  # the average's own state came back with the checkpoint
    shutil.copytree(tmp_path / "last" / "checkpoints", tmp_path / "mixed" / "checkpoints")
    with pytest.raises(UsageError, match="--no-use_ema"):  # a checkpoint without the average cannot resume one
        run(tmp_path / "mixed", "--resume_from_checkpoint", "latest", "--checkpointing_steps", "0")


def test_a_learning_rate_schedule_changes_the_steps_resumes_exactly_and_steps_inside_the_backward_pass(tmp_path):
    cosine = ["--lr_scheduler", "cosine", "--lr_warmup_steps", "2", "--no-use_ema"]  # the last step's weights
    constant = run(tmp_path / "constant", "--no-use_ema")
    decayed = run(tmp_path / "cosine", *cosine, "--checkpointing_steps", "5")
    assert not same(constant, decayed)
    in_backward = run(tmp_path / "in_backward", *cosine, "--optimizer_in_backward")
    assert same(decayed, in_backward)  # each per-parameter Adam follows the same schedule
    shutil.copytree(tmp_path / "cosine" / "checkpoints", tmp_path / "resumed" / "checkpoints")
    resumed = run(tmp_path / "resumed", *cosine, "--resume_from_checkpoint", "latest", "--checkpointing_steps", "0")
    assert same(decayed, resumed)  # the schedule picks up at the checkpoint's step, not at its start
    assert json.load(open(tmp_path / "resumed" / "erasure.json"))["flags"]["lr_scheduler"] == "cosine"

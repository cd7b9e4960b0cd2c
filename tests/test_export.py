"""export (original SD single-file layout) and the one-line refusals of bad input and of a peft that cannot do LoRA."""

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file
from transformers import CLIPTextModel

from erase_diffusion.cli import main as cli_main
from erase_diffusion.layout import canonical_state_dict, save_model
from erase_diffusion.miniature import model_path
from erase_diffusion.train import cli as erase_cli


@pytest.fixture
def noop(tmp_path):
    """The miniature's own text encoder saved as an erasure of triangle (no training needed to test the plumbing)."""
    out = tmp_path / "noop"
    save_model(CLIPTextModel.from_pretrained(model_path(), subfolder="text_encoder"), out / "text_encoder")
    (out / "erasure.json").write_text(json.dumps({"concepts": ["triangle"], "family": "miniature"}))
    return out


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_export_writes_the_sd1_layout_with_the_same_tensors(noop):
    assert cli_main(["export", str(noop)]) == 0
    single = load_file(noop / "text_encoders.sd_original.safetensors")
    saved = canonical_state_dict(CLIPTextModel.from_pretrained(noop, subfolder="text_encoder"))
    assert set(single) == {"cond_stage_model.transformer." + k for k in saved}
    assert all(torch.equal(single["cond_stage_model.transformer." + k], v) for k, v in saved.items())


def test_export_refuses_bad_input_in_one_line_and_writes_nothing(noop, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["export", str(empty)]) == 2
    assert "not an erasure" in one_line_error(capsys) and not list(empty.iterdir())
    assert cli_main(["export", str(noop), "--format", "ckpt"]) == 2
    assert "'ckpt'" in one_line_error(capsys) and not (noop / "text_encoders.sd_original.safetensors").exists()
    taken = tmp_path / "taken.safetensors"
    taken.write_bytes(b"mine")
    assert cli_main(["export", str(noop), "--output", str(taken)]) == 2
    assert "exists" in one_line_error(capsys) and taken.read_bytes() == b"mine"
    assert sorted(p.name for p in noop.iterdir()) == ["erasure.json", "text_encoder"]


def test_lora_with_a_peft_this_transformers_refuses_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    import peft

    monkeypatch.setattr(peft, "__version__", "0.10.0")
    out = tmp_path / "out"
    code = erase_cli(["--concept", "triangle", "--lora_rank", "4", "--output_dir", str(out), "--report_to", "none"])
    line = one_line_error(capsys)
    assert code == 2 and "peft 0.10.0" in line and f"transformers {transformers.__version__}" in line
    assert not out.exists()

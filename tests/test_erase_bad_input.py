"""Bad input to the erase loop: one line naming the value, exit 2, nothing written to --output_dir."""

import json

import pytest

from erase_diffusion.train import cli

QUICK = ["--max_train_steps", "2", "--validation_seeds", "0", "--report_to", "none", "--linear_gradient_samples", "1"]


def folder(path, rows, images=()):
    path.mkdir()
    for name, content in images:
        (path / name).write_bytes(content)
    if rows is not None:
        (path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def cases(tmp_path):
    from erase_diffusion.miniature import world

    png = tmp_path / "ok.png"
    world.render("triangle", "red").save(png)
    not_sd = tmp_path / "not_sd"
    not_sd.mkdir()
    (not_sd / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"]}))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("user data")
    retain = folder(tmp_path / "retain", [{"file_name": "ok.png", "text": "a red circle"}], [("ok.png", png.read_bytes())])
    return {
        "unknown model dir": (["--pretrained_model_name_or_path", "/no/such/model"], "/no/such/model"),
        "not SD": (["--pretrained_model_name_or_path", str(not_sd)], "DDPMPipeline"),
        "empty concept": (["--concept", ""], "--concept"),
        "unknown concept": (["--concept", "zebra"], "zebra"),
        "concept in retain": (["--retain_concepts", "triangle,circle"], "triangle"),
        "empty forget folder": (["--forget_data_dir", folder(tmp_path / "f1", []), "--retain_data_dir", retain], "no image-caption pairs"),
        "undecodable image": (["--forget_data_dir", folder(tmp_path / "f2", [{"file_name": "bad.png", "text": "a"}],
                                                           [("bad.png", b"not a png")]), "--retain_data_dir", retain], "bad.png"),
        "missing caption file": (["--forget_data_dir", folder(tmp_path / "f3", None, [("ok.png", png.read_bytes())]),
                                  "--retain_data_dir", retain], "metadata.jsonl"),
        "negative lambda": (["--lambda_forget", "-1"], "--lambda_forget -1"),
        "zero lr": (["--learning_rate", "0"], "--learning_rate 0"),
        "negative warm-up": (["--lr_warmup_steps", "-1"], "--lr_warmup_steps -1"),
        "zero lora rank": (["--lora_rank", "0"], "--lora_rank 0"),
        "non-empty output": (["--output_dir", str(full)], "not empty"),
        "missing checkpoint": (["--resume_from_checkpoint", "checkpoint-999"], "checkpoint-999"),
        "fp16 on cpu": (["--mixed_precision", "fp16"], "fp16"),
        "in-backward step with accumulation": (["--optimizer_in_backward", "--gradient_accumulation_steps", "2"],
                                               "--gradient_accumulation_steps 2"),
        "in-backward step with fp16": (["--optimizer_in_backward", "--mixed_precision", "fp16"], "--optimizer_in_backward"),
    }


@pytest.mark.parametrize("case", ["unknown model dir", "not SD", "empty concept", "unknown concept", "concept in retain",
                                  "empty forget folder", "undecodable image", "missing caption file", "negative lambda",
                                  "zero lr", "zero lora rank", "non-empty output", "missing checkpoint", "fp16 on cpu",
                                  "in-backward step with accumulation", "in-backward step with fp16"])
def test_bad_input(cases, case, tmp_path, capsys):
    extra, expected = cases[case]
    out = tmp_path / "out"
    argv = ["--concept", "triangle", "--output_dir", str(out), *QUICK, *extra]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not out.exists()
    if case == "non-empty output":
        assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]

"""The erase loop on every SD family (tiny random models of the real classes), each data source, LoRA, bad input."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection

import tiny_sd
from erase_diffusion.train import cli, main, parse_args

FAST = ["--max_train_steps", "4", "--train_batch_size", "4", "--num_forget_images", "4", "--num_retain_images", "4",
        "--validation_seeds", "0", "--report_to", "none", "--checkpointing_steps", "0"]


@pytest.fixture(scope="module", params=["sd1", "sd2", "sdxl"])
def family(request, tmp_path_factory):
    pipe_dir, clips = tiny_sd.build(request.param, str(tmp_path_factory.mktemp(request.param)))
    return request.param, pipe_dir, clips


def run(pipe_dir, clips, out, *extra):
    return main(parse_args(["--pretrained_model_name_or_path", pipe_dir, "--clip_model_name_or_path", ",".join(clips),
                            "--concept", "triangle", "--retain_concepts", "circle,square", "--output_dir", str(out),
                            *FAST, *extra]))


def test_self_generated_erasure_changes_only_the_text_encoders(family, tmp_path):
    name, pipe_dir, clips = family
    result = run(pipe_dir, clips, tmp_path / "out", "--data_source", "generate")
    record = json.load(open(tmp_path / "out" / "erasure.json"))
    assert record["family"] == name and record["concepts"] == ["triangle"] and record["format"] == "full"
    encoders = ["text_encoder", "text_encoder_2"] if name == "sdxl" else ["text_encoder"]
    assert record["text_encoders"] == encoders and result["record"]["final_losses"]["forget"] is not None
    for sub in encoders:
        cls = CLIPTextModelWithProjection if sub == "text_encoder_2" else CLIPTextModel
        erased, base = cls.from_pretrained(tmp_path / "out", subfolder=sub), cls.from_pretrained(pipe_dir, subfolder=sub)
        assert erased.config.hidden_size == base.config.hidden_size
        changed = [k for k, v in erased.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
        assert changed, f"{sub} did not learn"
    assert (tmp_path / "out" / "README.md").read_text().count("from_pretrained") >= 2


def test_image_folder_source_and_lora(family, tmp_path):
    name, pipe_dir, clips = family
    from erase_diffusion.miniature import world

    for kind, shapes in (("forget", ["triangle"]), ("retain", ["circle", "square"])):
        d = tmp_path / kind
        d.mkdir()
        with open(d / "metadata.jsonl", "w") as f:
            for i, s in enumerate(shapes * 2):
                world.render(s, "red").save(d / f"{i}.png")
                f.write(json.dumps({"file_name": f"{i}.png", "text": f"a red {s}"}) + "\n")
    run(pipe_dir, clips, tmp_path / "out", "--forget_data_dir", str(tmp_path / "forget"), "--retain_data_dir",
        str(tmp_path / "retain"), "--lora_rank", "2")
    lora = load_file(tmp_path / "out" / "pytorch_lora_weights.safetensors")
    assert any(k.startswith("text_encoder.") for k in lora)
    assert (name == "sdxl") == any(k.startswith("text_encoder_2.") for k in lora)
    assert not (tmp_path / "out" / "text_encoder").exists()
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(pipe_dir)
    before = pipe.text_encoder(torch.tensor([[0, 5, 1]]))[0]
    pipe.load_lora_weights(str(tmp_path / "out"))
    assert not torch.allclose(pipe.text_encoder(torch.tensor([[0, 5, 1]]))[0], before)


def test_clip_that_does_not_match_the_encoder_is_refused(tmp_path, capsys):
    sd1, clips1 = tiny_sd.build("sd1", str(tmp_path / "a"))
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(clips1[0])
    clip.config.text_config.hidden_size = 48
    wrong = CLIPModel(clip.config)
    wrong.save_pretrained(tmp_path / "wrong")
    out = tmp_path / "out"
    code = cli(["--pretrained_model_name_or_path", sd1, "--clip_model_name_or_path", str(tmp_path / "wrong"),
                "--concept", "triangle", "--retain_concepts", "circle", "--output_dir", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "hidden size 48" in err and not out.exists()

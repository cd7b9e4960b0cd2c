"""The erase loop on every SD family (tiny random models of the real classes), each data source, LoRA, bad input."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection

import tiny_sd
from erase_diffusion.cli import main as cli_main
from erase_diffusion.layout import canonical_state_dict
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


def reference_keys(layers, projection=False, lora=None):
    """The key names of the hub's SD text encoders (runwayml/stable-diffusion-v1-5 text_encoder/model.safetensors has
    exactly these for 12 layers; SDXL's text_encoder_2 adds text_projection.weight), or of a diffusers LoRA file."""
    per_layer = [f"{m}.{p}" for m in ("layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2", "self_attn.k_proj",
                                      "self_attn.q_proj", "self_attn.v_proj", "self_attn.out_proj")
                 for p in ("weight", "bias")]
    if lora:
        return {f"{lora}.text_model.encoder.layers.{i}.self_attn.{p}.lora_{ab}.weight"
                for i in range(layers) for p in ("q_proj", "k_proj", "v_proj", "out_proj") for ab in "AB"}
    keys = {"text_model.embeddings.position_embedding.weight", "text_model.embeddings.token_embedding.weight",
            "text_model.final_layer_norm.weight", "text_model.final_layer_norm.bias"}
    keys |= {f"text_model.encoder.layers.{i}.{k}" for i in range(layers) for k in per_layer}
    return keys | ({"text_projection.weight"} if projection else set())


@pytest.fixture(scope="module")
def erased(family, tmp_path_factory):
    """A full erasure of the family's tiny pipeline from self-generated data."""
    name, pipe_dir, clips = family
    out = tmp_path_factory.mktemp(f"{name}-erased") / "out"
    return out, run(pipe_dir, clips, out, "--data_source", "generate")


def test_self_generated_erasure_changes_only_the_text_encoders(family, erased):
    name, pipe_dir, clips = family
    out, result = erased
    record = json.load(open(out / "erasure.json"))
    assert record["family"] == name and record["concepts"] == ["triangle"] and record["format"] == "full"
    encoders = ["text_encoder", "text_encoder_2"] if name == "sdxl" else ["text_encoder"]
    assert record["text_encoders"] == encoders and result["record"]["final_losses"]["forget"] is not None
    for sub in encoders:
        cls = CLIPTextModelWithProjection if sub == "text_encoder_2" else CLIPTextModel
        model, base = cls.from_pretrained(out, subfolder=sub), cls.from_pretrained(pipe_dir, subfolder=sub)
        assert model.config.hidden_size == base.config.hidden_size
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
        assert changed, f"{sub} did not learn"
    assert (out / "README.md").read_text().count("from_pretrained") >= 2


def test_saved_encoders_use_the_hubs_key_layout_and_round_trip_bit_exact(family, erased):
    name, _, _ = family
    out, _ = erased
    for sub in (["text_encoder", "text_encoder_2"] if name == "sdxl" else ["text_encoder"]):
        saved = load_file(out / sub / "model.safetensors")
        cls = CLIPTextModelWithProjection if sub == "text_encoder_2" else CLIPTextModel
        model = cls.from_pretrained(out, subfolder=sub)
        assert set(saved) == reference_keys(model.config.num_hidden_layers, projection=sub == "text_encoder_2")
        loaded = canonical_state_dict(model)
        assert set(loaded) == set(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)


def test_single_file_export_reads_back_through_diffusers_own_conversion(family, erased, capsys):
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    name, _, _ = family
    out, _ = erased
    assert cli_main(["export", str(out), "--format", "single_file"]) == 0
    single = load_file(out / "text_encoders.sd_original.safetensors")
    layout = {"sd1": ["cond_stage_model.transformer.text_model."], "sd2": ["cond_stage_model.model."],
              "sdxl": ["conditioner.embedders.0.transformer.text_model.", "conditioner.embedders.1.model."]}[name]
    assert {next(p for p in layout if k.startswith(p)) for k in single} == set(layout)
    for k, sub in enumerate(["text_encoder", "text_encoder_2"][:len(layout)]):
        cls = CLIPTextModelWithProjection if sub == "text_encoder_2" else CLIPTextModel
        model = cls.from_pretrained(out, subfolder=sub)
        if layout[k].endswith(".model."):  # OpenCLIP layout: diffusers splits in_proj back into q, k, v
            back = convert_open_clip_checkpoint(model, single, prefix=layout[k])
        else:
            back = convert_ldm_clip_checkpoint({key: v for key, v in single.items() if key.startswith(layout[k])})
        saved = canonical_state_dict(model)
        assert set(back) == set(saved) and all(torch.equal(back[key], saved[key]) for key in saved)


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
    layers = CLIPTextModel.from_pretrained(pipe_dir, subfolder="text_encoder").config.num_hidden_layers
    expected = reference_keys(layers, lora="text_encoder")
    if name == "sdxl":
        expected |= reference_keys(layers, lora="text_encoder_2")
    assert set(lora) == expected
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

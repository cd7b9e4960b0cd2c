"""`erase-diffusion evaluate` and `erase-diffusion attack` on real erasures of the miniature: a triangle erasure against
a no-op, held-out phrasing, in-prompt specificity, the attack suite, CLIP's own tasks, the report files, and bad input
(one line, exit 2, nothing written)."""

import json
import os
import shutil

import pytest

from erase_diffusion import cli as erase_diffusion_cli
from erase_diffusion.evaluation.evaluate import main, parse_args
from erase_diffusion.miniature import model_path

# Small but real: one seed per template, tiny attack budgets, few renders for CLIP's tasks.
SMALL = ["--num_seeds", "1", "--retain_concepts", "circle", "--num_inference_steps", "10", "--discrete_tokens", "1",
         "--discrete_candidates", "2", "--soft_prompt_steps", "3", "--soft_prompt_images", "1", "--inversion_steps",
         "3", "--inversion_images", "1", "--clip_images", "6"]
PNGS = ("accuracy_per_concept.png", "leak_histogram.png", "grid_forget.png", "grid_held_out_paraphrase.png",
        "grid_held_out_template.png", "grid_retain.png", "grid_in_prompt.png", "attack_discrete.png",
        "attack_soft_prompt.png", "attack_inversion.png")


@pytest.fixture(scope="module")
def triangle_erasure(default_erasure):
    return default_erasure[0]


@pytest.fixture(scope="module")
def noop_erasure(tmp_path_factory):
    """The miniature's own text encoder saved as if it were an erasure of triangle."""
    from transformers import CLIPTextModel

    from erase_diffusion.layout import save_model

    out = tmp_path_factory.mktemp("erasures") / "noop"
    save_model(CLIPTextModel.from_pretrained(model_path(), subfolder="text_encoder"), out / "text_encoder")
    (out / "erasure.json").write_text(json.dumps({"concepts": ["triangle"]}))
    return out


def test_triangle_erasure_is_measured_and_reported(triangle_erasure, tmp_path):
    report = tmp_path / "report"
    returned = main(parse_args(["--erased", str(triangle_erasure), "--output_dir", str(report), *SMALL]))
    m = json.loads((report / "metrics.json").read_text())
    assert m["forget_accuracy"] == returned["forget_accuracy"]
    forget = [im for im in m["images"] if im["group"] == "forget"]
    assert len(forget) == 3  # three default templates, one seed
    for model in ("original", "erased"):  # the headline number is a plain count of the saved verdicts
        hand = sum(im[f"verdict_{model}"] == "triangle" for im in forget) / len(forget)
        assert m["forget_accuracy"][model]["triangle"] == hand
    assert m["forget_accuracy"]["original"]["triangle"] >= 2 / 3
    assert m["forget_accuracy"]["erased"]["triangle"] <= 1 / 3
    for group in ("held_out_paraphrase", "held_out_template"):  # reported apart from the training phrasing
        assert m[f"{group}_accuracy"]["original"]["triangle"] >= 0.5
        assert any(im["group"] == group for im in m["images"])
    assert set(m["retain_accuracy"]["erased"]) == {"circle"}
    in_prompt = [im for im in m["images"] if im["group"] == "in_prompt"]
    assert len(in_prompt) == 4 and all("+" in im["verdict_original"] for im in in_prompt)  # 64x32, both halves judged
    assert m["in_prompt"]["original"]["kept_right"] >= 0.5
    assert m["drift"]["pixel"] > 0 and m["leak_score"]["erased"]["forget"] < m["leak_score"]["original"]["forget"]
    zero_shot = {k: m["clip_tasks"][k]["zero_shot"] for k in ("original", "unlearned")}
    assert zero_shot["unlearned"]["forget"] < zero_shot["original"]["forget"]
    assert set(m["attacks"]) == {"discrete", "soft_prompt", "inversion"}
    for name, found in m["attacks"].items():
        assert 0 <= found["asr_pre"] <= 1 and 0 <= found["asr_post"] <= 1 and found["records"], name
    for found in m["attacks"]["discrete"]["records"]:
        if not found["pre_success"]:  # the search added a word to the prompt it attacked
            assert found["added_tokens"] == 1 and found["prompt"] in found["found"] != found["prompt"]
    assert m["unet_evals"]["attacks"] > 0 and m["seconds"]["attacks"] > 0
    from safetensors.torch import load_file

    embeddings = load_file(report / "embeddings.safetensors")
    assert embeddings["soft_prompt.triangle"].shape[:2] == (3, 5) and embeddings["inversion.triangle"].shape[0] == 1
    assert m["substitutes"]["triangle"] and m["substitutes"]["triangle"][0]["thing"] != "triangle"
    text = (report / "report.md").read_text()
    for png in PNGS:
        assert (report / png).stat().st_size > 1000 and f"]({png})" in text, png
    assert not [p for p in os.listdir(tmp_path) if p != "report"]  # the staging dir was renamed, not left behind


def test_unerased_copy_reports_forget_as_base_and_no_drift(noop_erasure, tmp_path):
    m = main(parse_args(["--erased", str(noop_erasure), "--output_dir", str(tmp_path / "report"), "--templates",
                         "a {colour} {concept}", "--attacks", "discrete", *SMALL]))
    assert m["forget_accuracy"]["erased"] == m["forget_accuracy"]["original"]
    assert m["forget_accuracy"]["erased"]["triangle"] == 1.0
    assert m["retain_accuracy"]["erased"] == m["retain_accuracy"]["original"]
    assert m["in_prompt"]["erased"] == m["in_prompt"]["original"]
    assert m["drift"] == {"pixel": 0.0, "perceptual": 0.0, "pixel_max": 0.0}
    assert m["attacks"]["discrete"]["asr_pre"] == 1.0  # nothing erased: the plain prompt already shows the concept
    zero_shot = {k: m["clip_tasks"][k]["zero_shot"] for k in ("original", "unlearned")}
    assert zero_shot["unlearned"] == zero_shot["original"]


def test_each_attack_recovers_the_concept_from_the_base(mini_pipe, judge):
    """From prompts naming the neutral blob, with a small budget, each attack makes the un-erased base draw triangles."""
    from erase_diffusion.evaluation.attack_suite import attack_power, parse_args as attack_args

    args = attack_args(["--erased", "unused", "--output_dir", "unused", "--discrete_tokens", "2", "--soft_prompt_steps",
                        "30", "--soft_prompt_images", "2", "--inversion_steps", "60", "--inversion_images", "2"])
    power = attack_power(mini_pipe, judge, "triangle", ("discrete", "soft_prompt", "inversion"), args,
                         {"num_inference_steps": 10, "guidance_scale": 5.0}, n=4)
    assert all(share >= 0.5 for share in power.values()), power


def test_attack_command_writes_prompts_embeddings_and_grids(triangle_erasure, tmp_path, capsys):
    out = tmp_path / "attacks"
    code = erase_diffusion_cli.main(["attack", "--erased", str(triangle_erasure), "--output_dir", str(out),
                                     "--attacks", "soft_prompt,inversion", "--num_seeds", "1", "--num_inference_steps",
                                     "5", "--soft_prompt_steps", "2", "--inversion_steps", "2", "--soft_prompt_images",
                                     "1", "--inversion_images", "1"])
    assert code == 0 and "soft_prompt: ASR" in capsys.readouterr().out
    found = json.loads((out / "attacks.json").read_text())
    assert set(found) == {"soft_prompt", "inversion"} and len(found["soft_prompt"]["records"]) == 3
    for name in found:  # the learnt vectors' norm beside the vocabulary's: how far outside typed input they sit
        assert found[name]["vector_norm"]["found"] > 0 and found[name]["vector_norm"]["vocabulary"] > 0
    assert (out / "embeddings.safetensors").is_file() and (out / "attack_inversion.png").is_file()


@pytest.fixture
def erasure_without_record(tmp_path):
    encoder = tmp_path / "bare" / "text_encoder"
    encoder.mkdir(parents=True)
    shutil.copy(os.path.join(model_path(), "text_encoder", "config.json"), encoder / "config.json")
    return tmp_path / "bare"


@pytest.mark.parametrize("command, extra, message", [
    ("evaluate", [], "no erasure.json naming its concepts"),
    ("evaluate", ["--concept", "dog"], "not in the judge's vocabulary; it knows: circle, square, triangle"),
    ("evaluate", ["--concept", "triangle", "--templates", "a {colour} thing"], "has no {concept} placeholder"),
    ("evaluate", ["--concept", "triangle", "--num_seeds", "0"], "--num_seeds 0 must be a positive integer"),
    ("evaluate", ["--concept", "triangle", "--attacks", "discrete,jailbreak"], "--attacks jailbreak: unknown attack"),
    ("attack", ["--concept", "triangle", "--soft_prompt_steps", "0"], "--soft_prompt_steps 0 must be positive"),
    ("attack", ["--concept", "triangle", "--inversion_lr", "-1"], "--inversion_lr -1.0 must be positive"),
])
def test_bad_input_is_one_line_and_writes_nothing(erasure_without_record, tmp_path, capsys, command, extra, message):
    out = tmp_path / "report"
    code = erase_diffusion_cli.main([command, "--erased", str(erasure_without_record), "--output_dir", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_an_erasure_for_another_base_is_refused(tmp_path, capsys):
    import tiny_sd
    from erase_diffusion.layout import save_model
    from transformers import CLIPTextModel

    pipe_dir, _ = tiny_sd.build("sd1", str(tmp_path / "sd1"))
    other = tmp_path / "other"
    save_model(CLIPTextModel.from_pretrained(pipe_dir, subfolder="text_encoder"), other / "text_encoder")
    (other / "erasure.json").write_text(json.dumps({"concepts": ["triangle"]}))
    code = erase_diffusion_cli.main(["evaluate", "--erased", str(other), "--output_dir", str(tmp_path / "report"),
                                     "--attacks", "none", "--num_seeds", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "made for another base" in err and "\n" not in err and not (tmp_path / "report").exists()


def test_unwritable_output_dir_is_refused(noop_erasure, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code = erase_diffusion_cli.main(["evaluate", "--erased", str(noop_erasure), "--output_dir", str(blocker / "report")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not writable" in err and "\n" not in err
    assert blocker.read_text() == "not a directory"

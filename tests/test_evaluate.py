"""`erase-diffusion evaluate` on real erasures of the miniature: a triangle erasure against a no-op, the adversarial
search, CLIP's own tasks, the report files, and bad input (one line, exit 2, nothing written)."""

import json
import os
import shutil

import pytest

from erase_diffusion import cli as erase_diffusion_cli
from erase_diffusion.evaluation.evaluate import main, parse_args
from erase_diffusion.miniature import model_path

# Small but real: one seed per template, a one-token attack on two prompts, few renders for CLIP's tasks.
SMALL = ["--num_seeds", "1", "--retain_concepts", "circle", "--num_inference_steps", "10", "--attack_tokens", "1",
         "--attack_candidates", "2", "--attack_prompts", "2", "--clip_images", "6"]
PNGS = ("accuracy_per_concept.png", "leak_histogram.png", "grid_forget.png", "grid_rephrase.png", "grid_retain.png")


@pytest.fixture(scope="module")
def triangle_erasure(tmp_path_factory):
    from erase_diffusion.train import main as erase, parse_args as erase_args

    out = tmp_path_factory.mktemp("erasures") / "no-triangle"
    erase(erase_args(["--concept", "triangle", "--output_dir", str(out), "--validation_seeds", "0", "--report_to",
                      "none", "--checkpointing_steps", "0"]))
    return out


@pytest.fixture(scope="module")
def noop_erasure(tmp_path_factory):
    """The miniature's own text encoder saved as if it were an erasure of triangle."""
    from transformers import CLIPTextModel

    out = tmp_path_factory.mktemp("erasures") / "noop"
    CLIPTextModel.from_pretrained(model_path(), subfolder="text_encoder").save_pretrained(out / "text_encoder")
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
    assert m["rephrase_accuracy"]["erased"]["triangle"] <= 1 / 3
    assert set(m["retain_accuracy"]["erased"]) == {"circle"}
    assert m["drift"]["pixel"] > 0 and m["leak_score"]["erased"]["forget"] < m["leak_score"]["original"]["forget"]
    zero_shot = {k: m["clip_tasks"][k]["zero_shot"] for k in ("original", "unlearned")}
    assert zero_shot["unlearned"]["forget"] < zero_shot["original"]["forget"]
    assert zero_shot["unlearned"]["retain"] >= zero_shot["original"]["retain"] - 0.2
    attack = m["attack"]
    assert len(attack["prompts"]) == 2 and 0 <= attack["asr_pre"] <= attack["asr_post"] <= 1
    for found in attack["prompts"]:
        if not found["pre_success"]:  # the search added a word to the prompt it attacked
            assert found["added_tokens"] == 1 and found["prompt"] in found["adversarial_prompt"] != found["prompt"]
    assert m["substitutes"]["triangle"] and m["substitutes"]["triangle"][0]["thing"] != "triangle"
    text = (report / "report.md").read_text()
    for png in PNGS:
        assert (report / png).stat().st_size > 1000 and f"]({png})" in text
    assert not [p for p in os.listdir(tmp_path) if p != "report"]  # the staging dir was renamed, not left behind


def test_unerased_copy_reports_forget_as_base_and_no_drift(noop_erasure, tmp_path):
    m = main(parse_args(["--erased", str(noop_erasure), "--output_dir", str(tmp_path / "report"), "--templates",
                         "a {colour} {concept}", *SMALL]))
    assert m["forget_accuracy"]["erased"] == m["forget_accuracy"]["original"]
    assert m["forget_accuracy"]["erased"]["triangle"] == 1.0
    assert m["retain_accuracy"]["erased"] == m["retain_accuracy"]["original"]
    assert m["drift"] == {"pixel": 0.0, "perceptual": 0.0, "pixel_max": 0.0}
    assert m["attack"]["asr_pre"] == 1.0  # nothing erased: the plain prompt already shows the concept
    zero_shot = {k: m["clip_tasks"][k]["zero_shot"] for k in ("original", "unlearned")}
    assert zero_shot["unlearned"] == zero_shot["original"]


@pytest.fixture
def erasure_without_record(tmp_path):
    encoder = tmp_path / "bare" / "text_encoder"
    encoder.mkdir(parents=True)
    shutil.copy(os.path.join(model_path(), "text_encoder", "config.json"), encoder / "config.json")
    return tmp_path / "bare"


@pytest.mark.parametrize("extra, message", [
    ([], "no erasure.json naming its concepts"),
    (["--concept", "dog"], "not in the judge's vocabulary; it knows: circle, square, triangle"),
    (["--concept", "triangle", "--templates", "a {colour} thing"], "has no {concept} placeholder"),
    (["--concept", "triangle", "--num_seeds", "0"], "--num_seeds 0 must be a positive integer"),
])
def test_bad_input_is_one_line_and_writes_nothing(erasure_without_record, tmp_path, capsys, extra, message):
    out = tmp_path / "report"
    code = erase_diffusion_cli.main(["evaluate", "--erased", str(erasure_without_record), "--output_dir", str(out),
                                     *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_unwritable_output_dir_is_refused(noop_erasure, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code = erase_diffusion_cli.main(["evaluate", "--erased", str(noop_erasure), "--output_dir", str(blocker / "report")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not writable" in err and "\n" not in err
    assert blocker.read_text() == "not a directory"

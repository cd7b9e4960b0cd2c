"""Benchmarks are not tests: this only smoke-runs each script on its smallest setting and checks what it records."""

import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # `benchmarks` under plain `pytest`

from benchmarks import ablation, anchor_floor, baselines, data_curve, erase_speed, memory, per_concept, scale  # noqa: E402


JUDGED = ("forget", "held_out", "retain", "colour", "in_prompt_kept", "discrete", "soft_prompt", "inversion")


def lines(results_dir, script):
    path = results_dir / f"{script}.jsonl"
    assert path.is_file(), f"{script} wrote no results"
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert recs and all(r["script"] == script and r["smoke"] for r in recs)
    for r in recs:
        m = r["machine"]
        assert m["cpu_count"] >= 1 and m["torch"] and m["timestamp"] and m["platform"]
    return recs


def test_erase_speed_smoke(tmp_path):
    erase_speed.main(erase_speed.parse_args(["--smoke", "--results_dir", str(tmp_path)]))
    recs = lines(tmp_path, "erase_speed")
    runs = [r for r in recs if r["measurement"] == "run"]
    assert {r["config"] for r in runs} == {"cache on", "cache off"}
    for r in runs:
        assert r["process_wall"] > 0 and r["train"] > 0 and r["steps_per_second"] > 0 and r["peak_rss_mib"] > 0
        assert r["process_wall"] >= r["erase_wall"] > 0
    (summary,) = [r for r in recs if r["measurement"] == "speedup"]
    assert summary["speedup_steps_per_second"] > 0 and summary["one_concept_process_wall"] > 0


def test_scale_smoke(tmp_path):
    scale.main(scale.parse_args(["--smoke", "--results_dir", str(tmp_path), "--work_dir", str(tmp_path / "w")]))
    (rec,) = lines(tmp_path, "scale")
    assert rec["concepts"] == 2 and rec["n_forget"] == 8
    assert rec["process_wall"] > 0 and rec["train"] > 0 and rec["peak_rss_mib"] > 0 and rec["cached_feature_mib"] > 0


def test_memory_smoke(tmp_path):
    memory.main(memory.parse_args(["--smoke", "--results_dir", str(tmp_path), "--work_dir", str(tmp_path / "w")]))
    (rec,) = lines(tmp_path, "memory")
    assert rec["sizes"] == "tiny" and rec["lora_rank"] == 4 and not rec["cache_features"]
    assert 0 < rec["trainable_params"] < rec["text_params"]  # LoRA trains a sliver of the encoder
    assert rec["sec_per_step"] > 0 and rec["peak_rss_mib"] > rec["rss_floor_mib"] > 0
    assert rec["lower_bound_mib"] > 0 and rec["ratio"] > 0


@pytest.mark.filterwarnings("ignore")
def test_baselines_smoke(tmp_path):
    baselines.main(baselines.parse_args(["--smoke", "--results_dir", str(tmp_path)]))
    recs = {r["key"]: r for r in lines(tmp_path, "baselines")}
    assert set(recs) == {"base", "renderer", "generate", "generate_warm", "paper", "uce", "esd"}
    assert recs["generate"]["unet_evals"] > recs["generate_warm"]["unet_evals"] > 0  # the warm run reused the retain set
    # by name the UNet evaluations are its data's (the guard's drawings among them), the first-order set's gradients
    # and the guard's, each counted once; warm, the guard's drawings come from the cache with the retain set
    by_name = recs["generate"]["costs"]
    assert by_name["unet_evals_linearisation"] > 0 and 0 < by_name["unet_evals_guard_scenes"] < by_name["unet_evals_data"]
    assert recs["generate"]["unet_evals"] == sum(by_name[f"unet_evals_{k}"] for k in ("data", "linearisation", "training"))
    assert recs["generate_warm"]["costs"]["unet_evals_guard_scenes"] == 0
    # the renderer path's UNet evaluations are its levers' (the gradients and the guard), none for data
    costs = recs["renderer"]["costs"]
    assert recs["esd"]["unet_evals"] > 0 and costs["unet_evals_data"] == 0
    assert recs["renderer"]["unet_evals"] == costs["unet_evals_linearisation"] + costs["unet_evals_training"] > 0
    for rec in recs.values():
        for key in JUDGED:
            assert 0.0 <= rec[key] <= 1.0, (rec["key"], key)


@pytest.mark.filterwarnings("ignore")
def test_ablation_smoke_rows_run_their_own_levers(tmp_path):
    ablation.main(ablation.parse_args(["--smoke", "--rows", "paper,default,inner_steps_2", "--results_dir",
                                       str(tmp_path)]))
    recs = {r["key"]: r for r in lines(tmp_path, "ablation")}
    assert list(recs) == ["paper", "default", "inner_steps_2"]
    passes = {k: r["costs"]["text_encoder_forward_backward"] for k, r in recs.items()}
    # the inner attack's steps are encoder passes: the paper's objective has none, 2 inner steps fewer than 4
    assert passes["paper"] < passes["inner_steps_2"] < passes["default"]
    for rec in recs.values():
        assert all(0.0 <= rec[key] <= 1.0 for key in JUDGED), rec["key"]


@pytest.mark.filterwarnings("ignore")
def test_data_curve_smoke_pays_only_for_forget_images_once_the_retain_set_is_cached(tmp_path):
    out = data_curve.main(data_curve.parse_args(["--smoke", "--results_dir", str(tmp_path)]))
    recs = lines(tmp_path, "data_curve")
    assert [(r["vary"], r["value"]) for r in recs] == [("forget_images", 4), ("forget_images", 8)]
    assert [r["costs"]["unet_evals_retain_images"] for r in recs] == [0, 0]  # the warm-up run generated them
    forget = [r["costs"]["unet_evals_forget_images"] for r in recs]
    assert forget[1] == 2 * forget[0] > 0  # twice the forget images, twice their evaluations
    # the first-order set's gradients (per attacked caption, not per image) the same; the guard's drawings cached too
    linear = [r["costs"]["unet_evals_linearisation"] for r in recs]
    assert linear[0] == linear[1] > 0 and [r["costs"]["unet_evals_guard_scenes"] for r in recs] == [0, 0]
    assert all(r["unet_evals"] == r["costs"]["unet_evals_data"] + linear[0] + r["costs"]["unet_evals_training"]
               for r in recs)
    assert all(0.0 <= rec[key] <= 1.0 for rec in recs for key in JUDGED)
    assert os.path.getsize(out["plot"]) > 0


def test_esd_x_changes_only_cross_attention():
    from benchmarks import esd
    from erase_diffusion.generate import load_pipeline

    pipe = load_pipeline()
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    esd.erase(pipe, ["a red triangle", "a blue wedge"], iterations=3, num_inference_steps=3)
    changed = [k for k, v in pipe.unet.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(".attn2." in k for k in changed), changed


@pytest.mark.filterwarnings("ignore")
def test_per_concept_smoke_and_the_bars_it_checks(tmp_path):
    out = per_concept.main(per_concept.parse_args(["--smoke", "--concepts", "star,heart", "--results_dir", str(tmp_path)]))
    (rec,) = lines(tmp_path, "per_concept")  # smoke: the first concept only
    assert rec["method"] == "star" and rec["missed"] == (", ".join(per_concept.missed(rec)) or "none")
    assert os.path.isfile(out["plot"])
    good = {"forget": 0.0, "held_out": 0.05, "retain": 0.98, "retain_base": 1.0, "colour": 1.0, "colour_base": 1.0,
            "in_prompt_kept": 0.95, "in_prompt_kept_base": 1.0, "discrete": 0.0, "soft_prompt": 0.1}
    assert per_concept.missed(good) == []
    assert per_concept.missed({**good, "retain": 0.97, "soft_prompt": 0.11}) == ["retain", "soft prompt > 10%"]


def test_per_concept_averages_its_seeds_and_checks_the_bars_on_the_average(capsys, tmp_path):
    rows = [{"method": "star s0", "seed": 0, "soft_prompt": 0.0, "retain": 1.0, "retain_base": 1.0, "costs": {}},
            {"method": "star s1", "seed": 1, "soft_prompt": 0.25, "retain": 0.96, "retain_base": 1.0, "costs": {}}]
    mean = per_concept.mean_row("star", rows)
    assert mean["method"] == "star mean" and mean["measurement"] == "mean" and "seed" not in mean
    assert mean["soft_prompt"] == 0.125 and mean["retain"] == 0.98 and mean["missed"] == "soft prompt > 10%"
    per_concept.plot([mean], tmp_path / "seeds.png", {"star mean": rows})  # whiskers from the lowest seed to the highest
    assert (tmp_path / "seeds.png").stat().st_size > 0
    assert per_concept.parse_args(["--seeds", "0,1, 2"]).seeds == [0, 1, 2]
    assert per_concept.parse_args([]).seeds == [0]
    with pytest.raises(SystemExit):
        per_concept.parse_args(["--seeds", "0,x"])
    assert "--seeds: '0,x': expected comma-separated integers" in capsys.readouterr().err


def test_anchor_floor_smoke(tmp_path, default_erasure):
    anchor_floor.main(anchor_floor.parse_args(["--smoke", "--erased", str(default_erasure[0]), "--word_search",
                                               "--results_dir", str(tmp_path)]))
    searched = [r for r in lines(tmp_path, "anchor_floor") if r["measurement"] == "word_search"]
    assert [(r["concept"], r["encoder"]) for r in searched] == [("triangle", "erased"), ("triangle", "base")]
    assert all(r["images"] == 12 and 0 <= r["asr"] <= 1 for r in searched)  # evaluate's forget prompts, 3 x 4 seeds
    # the floor's search may add no name of the concept, held-out ones included (toward the base's states of the
    # concept's prompts its nearest edit would be the name itself); the erased encoder's search may add any word
    names = {"triangle", "wedge", "pyramid", "delta"}
    assert names <= set(searched[1]["left_out"]) and not names & set(searched[1]["added"]) and searched[1]["added"]
    assert searched[0]["left_out"] == []
    recs = {(r["encoder"], r["prompts"]): r for r in lines(tmp_path, "anchor_floor") if r["measurement"] == "in_prompt"}
    assert set(recs) == {(e, p) for e in ("base", "erased") for p in ("as evaluated", "anchored (blob)")}
    assert all(r["images"] == 20 and 0 <= r["kept_right"] <= 1 for r in recs.values())  # 5 kept shapes, 2 orders, 2 seeds
    # the default erasure ties the name to the anchor's row: its encoder reads the concept's prompt as the twin
    as_evaluated, anchored = recs["erased", "as evaluated"], recs["erased", "anchored (blob)"]
    assert (as_evaluated["kept_right"], as_evaluated["erased_gone"]) == (anchored["kept_right"], anchored["erased_gone"])
    assert [m.replace("triangle", "blob") for m in as_evaluated["missed"]] == anchored["missed"]  # prompt by prompt

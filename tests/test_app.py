"""The studio, in-process through gradio_client and in a real browser (Debian's chromium driven by playwright)."""

import json
import os
import shutil
import socket
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

import quick
from app.charts import CSS
from app.studio import Studio
from app.ui import build_ui
from erase_diffusion.defaults import RENDERER_LEVERS
from erase_diffusion.train import main as erase_main
from erase_diffusion.train import parse_args as erase_args

CHROMIUM = "/usr/bin/chromium"
QUICK = quick.QUICK


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, default_erasure):
    from erase_diffusion.evaluation.evaluate import main as evaluate, parse_args as evaluate_args

    root = tmp_path_factory.mktemp("studio")
    erased = str(root / "erasures" / "no-triangle")
    lora = str(root / "erasures" / "no-star-lora")
    shutil.copytree(default_erasure[0], erased)  # the session's default erasure; the Report below writes into the copy
    erase_main(erase_args(["--concept", "star", "--output_dir", lora, "--lora_rank", "4", "--max_train_steps", "30",
                           *QUICK]))
    # an evaluation the user already ran: the Report tab opens it instead of running one
    evaluate(evaluate_args(["--erased", erased, "--output_dir", os.path.join(erased, "report"), "--num_seeds", "1",
                            "--num_inference_steps", "5", "--discrete_tokens", "1", "--soft_prompt_steps", "2",
                            "--soft_prompt_images", "1", "--inversion_steps", "2", "--inversion_images", "1",
                            "--clip_images", "6"]))
    studio = Studio(erasures_dir=str(root / "erasures"), max_loaded=2)
    demo = build_ui(studio)
    demo.queue(default_concurrency_limit=1)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS)
    yield {"url": f"http://127.0.0.1:{port}/", "erased": os.path.realpath(erased), "lora": os.path.realpath(lora),
           "studio": studio, "root": root}
    demo.close()


def generate(client, erased, prompt="a red triangle", seed=0, n=1, strength=1.0, steps=20):
    return client.predict(prompt, "", seed, n, steps, 5.0, 32, erased, strength, api_name="/generate")


def pixels(item):
    return np.asarray(Image.open(item["image"]["path"] if isinstance(item["image"], dict) else item["image"]))


def test_generate_endpoint_returns_judged_pairs_side_by_side_and_is_seeded(served):
    client = Client(served["url"], verbose=False)
    gallery, chart, verdicts = generate(client, served["erased"])
    assert len(gallery) == 2 and "original" in gallery[0]["caption"] and "erased" in gallery[1]["caption"]
    assert pixels(gallery[0]).shape == (192, 192, 3)  # 32 px enlarged 6x, nearest-neighbour: 6x6 blocks of one colour
    block = pixels(gallery[0])[:6, :6].reshape(-1, 3)
    assert (block == block[0]).all()
    leaks = [v["leak"] for side in ("original", "erased") for v in verdicts[side]]
    assert all(0.0 <= x <= 1.0 for x in leaks)
    assert verdicts["original"][0]["leak"] > 0.5 > verdicts["erased"][0]["leak"]  # triangle drawn, then erased
    assert "leak-erased" in chart and "seed 0" in chart
    again = generate(client, served["erased"])[0]
    assert (pixels(gallery[0]) == pixels(again[0])).all() and (pixels(gallery[1]) == pixels(again[1])).all()


def test_two_object_prompts_draw_scenes_judged_half_by_half(served):
    client = Client(served["url"], verbose=False)
    gallery, _, verdicts = generate(client, served["erased"], "a red triangle and a blue circle")
    assert pixels(gallery[0]).shape == (192, 384, 3)  # 64x32 at 6x
    assert verdicts["original"][0]["label"].count("|") == 1 and "circle" in verdicts["erased"][0]["label"]


def test_bad_input_is_a_message_and_the_app_keeps_serving(served):
    client = Client(served["url"], verbose=False)
    for args, expected in ((("", "", 0, 1, 20, 5.0, 32), "prompt is empty"),
                           (("a red star", "", 0, 1, 0, 5.0, 32), "Value 0 is less than minimum value 1"),
                           (("a red star", "", 0, 1, 20, 99.0, 32), "Value 99.0 is greater than maximum value 30"),
                           (("a red star", "", 0, 1, 20, 5.0, 30), "size 30")):
        with pytest.raises(Exception, match=expected):
            client.predict(*args, served["erased"], 1.0, api_name="/generate")
    with pytest.raises(Exception, match="outside the erasures folder"):
        client.predict("a red star", "", 0, 1, 20, 5.0, 32, "/etc", 1.0, api_name="/generate")
    with pytest.raises(Exception, match="zebra"):
        client.predict(["zebra"], 50, api_name="/erase")
    assert len(generate(client, served["erased"], "a blue heart")[0]) == 2


def test_nothing_outside_the_erasures_folder_is_read(served, tmp_path):
    from erase_diffusion.errors import UsageError

    outside = tmp_path / "elsewhere"
    shutil.copytree(served["erased"], outside)
    with pytest.raises(UsageError, match="outside the erasures folder"):
        served["studio"].erased_pipeline(str(outside))
    link = served["root"] / "erasures" / "sneaky"
    link.symlink_to(outside)
    with pytest.raises(UsageError, match="outside the erasures folder"):
        served["studio"].resolve(str(link))
    link.unlink()


def test_memory_holds_at_most_max_loaded_pipelines_and_lora_strength_reuses_one(served):
    studio = served["studio"]
    pipe = studio.erased_pipeline(served["lora"], 1.0)
    for path, strength in [(served["erased"], 1.0), (served["lora"], 0.5), (served["erased"], 0.5),
                           (served["lora"], 0.25), (served["erased"], 1.0), (served["lora"], 1.0)] * 2:
        studio.erased_pipeline(path, strength)
        assert len(studio._erased) <= studio.max_loaded
    assert studio.erased_pipeline(served["lora"], 0.75) is pipe  # only the adapter's weight changed
    studio.erased_pipeline(served["erased"], 1.0)
    assert list(studio._erased) == [served["lora"], served["erased"]]


def test_twenty_concurrent_requests_are_all_answered_and_not_mixed_up(served):
    shapes = ["circle", "square", "star", "heart", "cross"]
    jobs = [(f"a {c} {shapes[i % 5]}", i) for i, c in enumerate(["red", "green", "blue", "yellow"] * 5)]

    def call(job):
        # 10 denoising steps: the base draws every shape right at 10 too
        return generate(Client(served["url"], verbose=False), served["erased"], job[0], job[1], steps=10)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, jobs))
    assert len(results) == 20
    for (prompt, seed), (_, _, verdicts) in zip(jobs, results):
        assert prompt.split()[-1] in verdicts["original"][0]["label"], (prompt, verdicts)
        assert verdicts["original"][0]["seed"] == seed


def test_uploads_that_are_not_erasures_for_this_base_are_refused_in_one_message(served, tmp_path):
    import tiny_sd
    from erase_diffusion.layout import save_model
    from transformers import CLIPTextModel

    client = Client(served["url"], verbose=False)
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("hello")
    escape = tmp_path / "escape.zip"
    with zipfile.ZipFile(escape, "w") as zf:
        zf.writestr("../erasure.json", "{}")
    pipe_dir, _ = tiny_sd.build("sd1", str(tmp_path / "sd1"))
    other = tmp_path / "other"
    save_model(CLIPTextModel.from_pretrained(pipe_dir, subfolder="text_encoder"), other / "text_encoder")
    (other / "erasure.json").write_text(json.dumps({"concepts": ["triangle"]}))
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        for f in other.rglob("*"):
            if f.is_file():
                zf.write(f, f.relative_to(other))
    before = sorted(os.listdir(served["root"] / "erasures"))
    for bad, message in ((not_zip, "not a .zip"), (escape, "holds '../erasure.json'"), (other_zip, "another")):
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(bad)), api_name="/upload")
    assert sorted(os.listdir(served["root"] / "erasures")) == before  # nothing half-unpacked is left
    assert len(generate(client, served["erased"])[0]) == 2


def browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"])


def not_blank(page, selector):
    """Every image under `selector` is a real picture: fetched back, it has more than one colour."""
    import io

    sources = page.locator(f"{selector} img").evaluate_all("imgs => imgs.map(i => i.src)")
    assert sources
    for src in sources:
        data = page.request.get(src).body()
        assert len(np.unique(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).reshape(-1, 3), axis=0)) > 1


def test_a_person_in_a_browser_uses_every_tab(served, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed and could not be installed (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    shots = {}
    with sync_playwright() as p:
        b = browser(p)
        page = b.new_page(viewport={"width": 1280, "height": 1200})
        page.goto(served["url"])
        # Compare: the pair side by side, judged, and a visible zero where the erased image does not leak
        page.get_by_label("Prompt", exact=True).fill("a green triangle")
        page.locator("#generate").click()
        page.wait_for_selector("#pairs img", timeout=120_000)
        page.wait_for_selector("#leak-chart .leak-erased", timeout=60_000)
        not_blank(page, "#pairs")
        assert page.locator("#leak-chart .leak-zero").first.is_visible()
        shots["compare"] = tmp_path / "compare.png"
        page.screenshot(path=str(shots["compare"]), full_page=True)
        # Report: the evaluation the user already ran, its attack numbers and images
        page.get_by_role("tab", name="Report").click()
        choice = page.locator("#report-erasure input")
        choice.fill(served["erased"])
        choice.press("Enter")
        page.locator("#open-report").click()
        page.wait_for_selector("#report-plots img", timeout=120_000)
        text = page.locator("#report-numbers").inner_text()
        assert "opened from" in text and "soft_prompt" in text and "held-out paraphrases" in text
        not_blank(page, "#report-plots")
        shots["report"] = tmp_path / "report.png"
        page.screenshot(path=str(shots["report"]), full_page=True)
        # Erase: phases, the new erasure's numbers, and its download
        page.get_by_role("tab", name="Erase").click()
        steps = page.locator("#erase-steps input[type=number]")
        assert steps.input_value() == str(RENDERER_LEVERS["steps_per_concept"])  # erase's default on the miniature
        steps.fill("10")  # the fewest the tab takes: the flow, not the erasure's quality, is under test here
        steps.press("Enter")
        page.locator("#erase").click()
        page.wait_for_selector("#downloads a", timeout=240_000)
        assert "Erased" in page.locator("#erase-status").inner_text()
        assert page.locator("#downloads a").first.get_attribute("href")
        shots["erase"] = tmp_path / "erase.png"
        page.screenshot(path=str(shots["erase"]), full_page=True)
        b.close()
    keep = os.environ.get("STUDIO_SCREENSHOTS")
    for name, shot in shots.items():
        assert Image.open(shot).size[0] == 1280
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(shot, os.path.join(keep, f"{name}.png"))


def test_erase_tab_makes_a_new_selectable_erasure_with_a_download(served):
    client = Client(served["url"], verbose=False)
    note, files, compare_choice, report_choice = client.predict(["heart"], 10, api_name="/erase")
    new = compare_choice if isinstance(compare_choice, str) else compare_choice["value"]
    assert "heart" in note and os.path.isfile(os.path.join(new, "erasure.json"))
    assert new in served["studio"].erasures() and any(str(f).endswith(".zip") for f in files)
    _, _, verdicts = generate(client, new, "a red heart")  # selectable at once, no restart
    assert len(verdicts["erased"]) == 1

"""The studio, in-process through gradio_client and in a real browser (Debian's chromium driven by playwright)."""

import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client
from PIL import Image

from app.studio import Studio
from app.ui import build_ui
from erase_diffusion.train import main as erase_main
from erase_diffusion.train import parse_args as erase_args

CHROMIUM = "/usr/bin/chromium"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    erased = str(root / "erasures" / "no-triangle")
    erase_main(erase_args(["--concept", "triangle", "--output_dir", erased, "--validation_seeds", "0",
                           "--report_to", "none", "--checkpointing_steps", "0"]))
    studio = Studio(erasures_dir=str(root / "erasures"))
    demo = build_ui(studio)
    demo.queue(default_concurrency_limit=1)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield {"url": f"http://127.0.0.1:{port}/", "erased": os.path.abspath(erased), "studio": studio}
    demo.close()


def generate(client, erased, prompt="a red triangle", seed=0, n=1):
    return client.predict(prompt, "", seed, n, 20, 5.0, 32, erased, 1.0, api_name="/generate")


def pixels(item):
    import numpy as np

    return np.asarray(Image.open(item["image"]["path"] if isinstance(item["image"], dict) else item["image"])).tolist()


def test_generate_endpoint_returns_judged_pairs_and_is_seeded(served):
    client = Client(served["url"], verbose=False)
    original, erased, _, verdicts = generate(client, served["erased"])
    assert len(original) == 1 and len(erased) == 1
    leaks = [v["leak"] for side in ("original", "erased") for v in verdicts[side]]
    assert all(0.0 <= x <= 1.0 for x in leaks)
    assert verdicts["original"][0]["leak"] > 0.5 > verdicts["erased"][0]["leak"]  # triangle drawn, then erased
    again = generate(client, served["erased"])
    assert pixels(original[0]) == pixels(again[0][0]) and pixels(erased[0]) == pixels(again[1][0])


def test_bad_input_is_a_message_and_the_app_keeps_serving(served):
    client = Client(served["url"], verbose=False)
    for args, expected in ((("", "", 0, 1, 20, 5.0, 32), "prompt is empty"),
                           (("a red star", "", 0, 1, 0, 5.0, 32), "Value 0 is less than minimum value 1"),
                           (("a red star", "", 0, 1, 20, 99.0, 32), "Value 99.0 is greater than maximum value 30"),
                           (("a red star", "", 0, 1, 20, 5.0, 30), "size 30")):
        with pytest.raises(Exception, match=expected):
            client.predict(*args, served["erased"], 1.0, api_name="/generate")
    with pytest.raises(Exception, match="/no/such/erasure"):
        client.predict("a red star", "", 0, 1, 20, 5.0, 32, "/no/such/erasure", 1.0, api_name="/generate")
    with pytest.raises(Exception, match="zebra"):
        client.predict(["zebra"], 50, 1.0, api_name="/erase")
    assert len(generate(client, served["erased"], "a blue heart")[0]) == 1


def test_twenty_concurrent_requests_are_all_answered_and_not_mixed_up(served):
    shapes = ["circle", "square", "star", "heart", "cross"]
    jobs = [(f"a {c} {shapes[i % 5]}", i) for i, c in enumerate(["red", "green", "blue", "yellow"] * 5)]

    def call(job):
        return generate(Client(served["url"], verbose=False), served["erased"], job[0], job[1])

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, jobs))
    assert len(results) == 20
    for (prompt, _), (_, _, _, verdicts) in zip(jobs, results):
        assert prompt.split()[-1] in verdicts["original"][0]["label"], (prompt, verdicts)


def test_a_person_in_a_browser_generates_a_pair(served, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed and could not be installed (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(served["url"])
        box = page.get_by_label("Prompt", exact=True)
        box.fill("a green triangle")
        page.locator("#generate").click()
        page.wait_for_selector("#original img", timeout=60_000)
        page.wait_for_selector("#erased img", timeout=60_000)
        shot = tmp_path / "studio.png"
        page.screenshot(path=str(shot), full_page=True)
        assert page.locator("#original img").count() >= 1 and page.locator("#erased img").count() >= 1
        browser.close()
    keep = os.environ.get("STUDIO_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
    assert Image.open(shot).size[0] == 1280


def test_erase_tab_makes_a_new_selectable_erasure_and_report_tab_shows_its_evaluation(served):
    client = Client(served["url"], verbose=False)
    note, compare_choice, report_choice, _ = client.predict(["star"], 50, 1.0, api_name="/erase")
    new = compare_choice if isinstance(compare_choice, str) else compare_choice["value"]
    assert "star" in note and os.path.isfile(os.path.join(new, "erasure.json"))
    assert new in served["studio"].erasures()
    _, _, _, verdicts = generate(client, new, "a red star")  # selectable at once, no restart
    assert len(verdicts["erased"]) == 1
    text, plots = client.predict(served["erased"], api_name="/report")
    assert "forget" in text and len(plots) >= 2

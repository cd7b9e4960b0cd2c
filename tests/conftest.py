import os

# Under `pytest -n 2` (make test) each worker and every process it starts gets one thread: the miniature's small ops
# barely use a second thread, and two 2-thread processes on 2 cores run many times slower than one alone.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session")
def mini_pipe():
    from erase_diffusion.generate import load_pipeline

    return load_pipeline()


@pytest.fixture(scope="session")
def judge():
    from erase_diffusion.evaluation.judge import Judge

    return Judge()


@pytest.fixture(scope="session")
def default_erasure(tmp_path_factory):
    """One erasure of triangle with erase's defaults and judged validation (2 seeds), shared read-only by every test
    that needs "the" erasure: it is the slowest thing the suite makes. Returns (directory, erasure.json's record)."""
    from erase_diffusion.train import main, parse_args

    out = tmp_path_factory.mktemp("default") / "no-triangle"
    # judged on 10 denoising steps, not 20: the base draws every shape right at both (colours 99 % against 100 %)
    result = main(parse_args(["--concept", "triangle", "--output_dir", str(out), "--validation_seeds", "2",
                              "--num_inference_steps", "10", "--report_to", "none", "--checkpointing_steps", "0"]))
    return out, result["record"]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the mark into the worker group
def pytest_collection_modifyitems(config, items):
    """Every test that reads the shared default erasure runs on one worker, so it is made once (with --dist
    loadgroup)."""
    for item in items:
        if "default_erasure" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("default_erasure"))


def pytest_configure(config):
    import sys

    sys.path.insert(0, os.path.dirname(__file__))  # tests/tiny_sd.py, shared by several test files

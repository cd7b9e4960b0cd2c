import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def mini_pipe():
    from erase_diffusion.generate import load_pipeline

    return load_pipeline()


@pytest.fixture(scope="session")
def judge():
    from erase_diffusion.evaluation.judge import Judge

    return Judge()


def pytest_configure(config):
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))  # tests/tiny_sd.py, shared by several test files

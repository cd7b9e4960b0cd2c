"""The command line: real generation and judging, and one clear line (exit 2, nothing written) for bad input."""

import subprocess
import sys

import pytest

from erase_diffusion.cli import main


def test_generate_then_judge_a_star(tmp_path, capsys):
    out = tmp_path / "star.png"
    assert main(["generate", "--prompt", "a red star", "--seed", "0", "--output", str(out)]) == 0
    assert out.is_file()
    assert main(["judge", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert " star " in line and " red " in line


def test_generate_several_writes_one_grid(tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    assert main(["generate", "--prompt", "a blue square", "--prompt", "a green heart", "--num_images", "3",
                 "--scale", "1", "--output", str(out)]) == 0
    assert Image.open(out).size == (3 * 32, 2 * 32)


@pytest.mark.parametrize("argv, expected", [
    (["generate", "--prompt", "x", "--pretrained_model_name_or_path", "/no/such/dir"], "/no/such/dir"),
    (["generate", "--prompt", "x", "--pretrained_model_name_or_path", "{empty}"], "model_index.json"),
    (["generate", "--prompt", "x", "--num_inference_steps", "0"], "--num_inference_steps 0"),
    (["generate", "--prompt", "x", "--height", "30"], "--height 30"),
    (["judge", "{notimage}"], "not a readable image"),
    (["judge", "/no/such.png"], "/no/such.png"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, expected):
    notimage = tmp_path / "notes.png"
    notimage.write_text("not an image")
    (tmp_path / "empty").mkdir()
    argv = [a.format(empty=tmp_path / "empty", notimage=notimage) for a in argv]
    out = tmp_path / "out.png"
    if argv[0] == "generate":
        argv += ["--output", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not out.exists()


def test_console_script_help_lists_every_flag():
    res = subprocess.run([sys.executable, "-m", "erase_diffusion.cli", "generate", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for flag in ("--pretrained_model_name_or_path", "--num_images", "--num_inference_steps", "--guidance_scale", "--seed"):
        assert flag in res.stdout

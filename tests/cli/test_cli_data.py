"""``hrcam data animals``: builds the subset, helpful --help, one-line errors with exit code 2."""
import numpy as np
import pytest
from PIL import Image

from hrcam.cli import main

WORDS = "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn04579432 whistle\n"


@pytest.fixture()
def imagenet(tmp_path):
    root = tmp_path / "imagenet"
    for wnid, n in {"n01440764": 10, "n01443537": 2, "n04579432": 2}.items():
        d = root / "train" / wnid
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((2, 2, 3), i, np.uint8)).save(d / f"{i}.png")
    words = tmp_path / "synset_words.txt"
    words.write_text(WORDS)
    return root, words


def test_animals_command_builds_subset(tmp_path, imagenet, capsys):
    src, words = imagenet
    out = tmp_path / "animals"
    argv = ["data", "animals", "--imagenet-dir", str(src), "--out", str(out), "--synsets", str(words),
            "--test-fraction", "0.5", "--seed", "3", "--mode", "copy", "--no-progress"]
    with pytest.warns(UserWarning, match="2 of the 398"):
        assert main(argv) == 0
    assert "wrote 2 classes" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train").iterdir()) == ["n01440764", "n01443537"]
    assert len(list((out / "test" / "n01440764").iterdir())) == 5  # --test-fraction 0.5 of 10
    assert not next((out / "test" / "n01440764").iterdir()).is_symlink()  # --mode copy
    assert (out / "classes.txt").read_text().splitlines()[0] == "n01440764 tench, Tinca tinca"


@pytest.mark.parametrize("case", ["missing_input", "not_empty", "bad_fraction"])
def test_user_errors_are_one_line_exit_2(tmp_path, imagenet, capsys, case):
    src, _ = imagenet
    out = tmp_path / "out"
    argv = ["data", "animals", "--imagenet_dir", str(src), "--out", str(out), "--no-progress"]
    if case == "missing_input":
        argv[3] = str(tmp_path / "nowhere")
    elif case == "not_empty":
        out.mkdir()
        (out / "x").write_text("x")
    else:
        argv += ["--test-fraction", "1.5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hrcam: error:") and err.count("\n") == 1 and "Traceback" not in err


def test_help_texts(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "--help"])
    assert info.value.code == 0
    assert "animals" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["data", "animals", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--imagenet-dir", "--out", "--synsets", "--test-fraction", "--seed", "--mode", "example"):
        assert flag in text
    with pytest.raises(SystemExit) as info:
        main(["data"])  # a sub-command is required
    assert info.value.code == 2

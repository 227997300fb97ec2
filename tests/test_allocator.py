"""The ``hrcam`` command's allocator choice: when it re-executes itself with tcmalloc, and that it
then really runs with it, with the same arguments and exit codes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hrcam import allocator
from hrcam.allocator import active, find_tcmalloc, preloaded, reexec_command

LIB = "/opt/lib/libtcmalloc_minimal.so.4"


def _plan(env, platform="linux", library=LIB):
    return reexec_command(["python", "/venv/bin/hrcam", "train", "half"], environ=env, platform=platform,
                          library=library)


def test_reexec_preloads_tcmalloc_and_keeps_the_arguments():
    argv, env = _plan({"PATH": "/bin", "LD_PRELOAD": "/x/libfoo.so"})
    assert argv == ["python", "/venv/bin/hrcam", "train", "half"]
    assert env["LD_PRELOAD"].split() == [LIB, "/x/libfoo.so"]
    assert env["PATH"] == "/bin"
    assert int(env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) > 2 ** 40


@pytest.mark.parametrize("env", [
    {"HRCAM_ALLOCATOR": "system"},
    {"HRCAM_ALLOCATOR": " System "},
    {"HRCAM_ALLOCATOR_REEXECUTED": "1"},  # the re-executed process itself, even where preloading failed
    {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"},
    {"LD_PRELOAD": "libtcmalloc.so.4:/x/y.so"},
])
def test_no_reexec_where_the_user_or_an_earlier_step_chose(env):
    assert _plan(env) is None


def test_no_reexec_off_linux_or_without_the_library(monkeypatch):
    assert _plan({}, platform="darwin") is None
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    assert _plan({}, library=None) is None


def test_an_unknown_choice_is_an_error():
    with pytest.raises(ValueError, match="HRCAM_ALLOCATOR='fast'.*tcmalloc, system"):
        _plan({"HRCAM_ALLOCATOR": "fast"})


def test_preloaded_names_the_replacement():
    assert preloaded({"LD_PRELOAD": "/a/libtcmalloc_minimal.so.4"}) == "tcmalloc"
    assert preloaded({"LD_PRELOAD": "libasan.so /b/libjemalloc.so.2"}) == "jemalloc"
    assert preloaded({"LD_PRELOAD": "/a/libfoo.so"}) is None
    assert preloaded({}) is None


def test_find_and_active_read_the_file_system(tmp_path):
    assert find_tcmalloc([str(tmp_path)]) is None
    (tmp_path / "libtcmalloc.so.4").write_bytes(b"")
    assert find_tcmalloc([str(tmp_path / "none"), str(tmp_path)]) == str(tmp_path / "libtcmalloc.so.4")
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert active(str(maps)) == "system"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10\n")
    assert active(str(maps)) == "tcmalloc"
    assert active(str(tmp_path / "missing")) == "system"


def _hrcam(*args, **env):
    """The installed ``hrcam`` command (the console script beside this interpreter)."""
    exe = os.path.join(os.path.dirname(sys.executable), "hrcam")
    if not os.path.exists(exe):
        pytest.skip("the hrcam console script is not installed beside this interpreter")
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("LD_PRELOAD", "HRCAM_ALLOCATOR", "HRCAM_ALLOCATOR_REEXECUTED")}
    full_env.update(env)
    return subprocess.run([exe, *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_the_command_runs_with_tcmalloc_where_installed():
    if sys.platform != "linux" or find_tcmalloc() is None:
        pytest.skip("tcmalloc is not installed (make install adds it where apt may)")
    r = _hrcam("--version")
    assert r.returncode == 0 and "memory allocator: tcmalloc" in r.stdout, (r.stdout, r.stderr)
    r = _hrcam("--version", HRCAM_ALLOCATOR="system")
    assert r.returncode == 0 and "memory allocator: system" in r.stdout, r.stdout
    # the re-executed process sees the same arguments and returns the same exit code
    r = _hrcam("train", "half", "--batch_size", "zero")
    assert r.returncode == 2 and "batch_size" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_bad_choice_is_one_line_and_exit_code_2():
    r = _hrcam("--version", HRCAM_ALLOCATOR="fast")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "hrcam: error: HRCAM_ALLOCATOR='fast': expected one of tcmalloc, system"]

"""A faster memory allocator for CPU work: gperftools' tcmalloc, preloaded into the ``hrcam`` command.

Training at 224 px allocates maps of 35–190 MB many times per step. glibc's ``malloc`` serves
every block above 32 MiB with a fresh ``mmap`` and returns it with ``munmap`` when the tensor is
freed, so the kernel maps and zeroes those pages again at every step: on a 2-core CPU that
page-fault work was about half of a HalfModel training step. tcmalloc keeps freed blocks and
hands them out again (PyTorch's CPU performance tuning guide recommends it, or jemalloc, for
this reason), which measured 2× the img/s of the same step under glibc (``bench_train.py``).

An allocator can only be chosen when a process starts (``LD_PRELOAD``), so the ``hrcam``
command re-executes itself once, before it imports torch, with the library preloaded, when:

- the platform is Linux and ``libtcmalloc_minimal.so.4`` (Debian / Ubuntu package
  ``libtcmalloc-minimal4``, which ``make install`` installs where it may) is found;
- ``HRCAM_ALLOCATOR`` is unset or ``tcmalloc`` (``system`` keeps glibc's allocator);
- no tcmalloc or jemalloc is preloaded already.

Child processes (DataLoader workers, the demo's side process, DDP workers) inherit it. From your
own Python, start the interpreter with it::

    LD_PRELOAD=$(python -m hrcam.allocator) python train.py

The numbers are the same either way: the allocator decides where tensors live, not what they hold.
Light on purpose: this module imports only the standard library.
"""
from __future__ import annotations

import os
import sys

__all__ = ["ALLOCATOR_ENV", "CHOICES", "active", "find_tcmalloc", "preloaded", "reexec_command", "reexec_with_tcmalloc"]

#: ``tcmalloc`` (the default: used when installed) or ``system`` (glibc's malloc)
ALLOCATOR_ENV = "HRCAM_ALLOCATOR"
CHOICES = ("tcmalloc", "system")
#: set in the re-executed process, so that it never re-executes again (even where preloading failed)
_REEXECUTED_ENV = "HRCAM_ALLOCATOR_REEXECUTED"
#: the minimal build (no heap profiler); the full one works too
LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                "/usr/local/lib", "/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu")
#: allocators that replace malloc when preloaded; one already there is left alone
_KNOWN = ("tcmalloc", "jemalloc", "mimalloc")


def find_tcmalloc(dirs=LIBRARY_DIRS) -> str | None:
    """The absolute path of an installed tcmalloc shared library, or ``None``."""
    for d in dirs:
        for name in LIBRARIES:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return path
    return None


def preloaded(environ=None) -> str | None:
    """The malloc replacement named in ``LD_PRELOAD`` (``tcmalloc``, ``jemalloc``, ...), or ``None``."""
    env = os.environ if environ is None else environ
    for entry in env.get("LD_PRELOAD", "").replace(":", " ").split():
        name = os.path.basename(entry)
        for known in _KNOWN:
            if known in name:
                return known
    return None


def active(maps_file: str = "/proc/self/maps") -> str:
    """The allocator this process runs with: ``tcmalloc``, ``jemalloc``, ``mimalloc`` (found among
    its loaded libraries) or ``system``."""
    try:
        with open(maps_file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return "system"
    for known in _KNOWN:
        if f"lib{known}" in text:
            return known
    return "system"


def _choice(environ) -> str:
    value = environ.get(ALLOCATOR_ENV, "").strip().lower() or "tcmalloc"
    if value not in CHOICES:
        raise ValueError(f"{ALLOCATOR_ENV}={environ.get(ALLOCATOR_ENV)!r}: expected one of {', '.join(CHOICES)}")
    return value


def reexec_command(argv: list[str], environ=None, platform: str | None = None,
                   library: str | None = None) -> tuple[list[str], dict] | None:
    """``(argv, environment)`` to re-execute this process with tcmalloc preloaded, or ``None``
    where it should run as it is (see the module docstring). ``library`` overrides the search.
    Raises ``ValueError`` for an unknown ``HRCAM_ALLOCATOR``."""
    env = dict(os.environ if environ is None else environ)
    if _choice(env) == "system" or env.get(_REEXECUTED_ENV) or preloaded(env):
        return None
    if (platform or sys.platform) != "linux":
        return None
    lib = library or find_tcmalloc()
    if lib is None:
        return None
    env["LD_PRELOAD"] = " ".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    env[_REEXECUTED_ENV] = "1"
    # tcmalloc reports every allocation above 1 GiB on stderr (all-class maps can be larger)
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 50))
    return list(argv), env


def reexec_with_tcmalloc() -> None:
    """Replace this process by the same command with tcmalloc preloaded, where
    :func:`reexec_command` says so; otherwise return. Call it before anything is written or started."""
    plan = reexec_command(list(getattr(sys, "orig_argv", [sys.executable, *sys.argv])))
    if plan is None:
        return
    argv, env = plan
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError:  # cannot re-execute (odd sandboxes): run on with the system allocator
        return


if __name__ == "__main__":  # ``LD_PRELOAD=$(python -m hrcam.allocator) python ...``
    path = find_tcmalloc()
    if path is None:
        print("no tcmalloc found; install Debian's / Ubuntu's libtcmalloc-minimal4", file=sys.stderr)
        raise SystemExit(1)
    print(path)

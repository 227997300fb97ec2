"""The ``hrcam`` command line: one module per command group, parsing only.

Each module listed in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which adds its
sub-command(s) and sets ``func`` on the parser it creates. ``func(args)`` returns an exit code.
Errors a user can fix are raised as :class:`hrcam.errors.UserError` and printed as one line
(exit code 2, no traceback).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Large CPU tensors (all-class high-res CAMs are N×K×S×S) on transparent huge pages: PyTorch reads
# this once, before its first allocation, and it cuts the kernel's page-zeroing cost about 3×.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from hrcam.allocator import ALLOCATOR_ENV, reexec_with_tcmalloc
from hrcam.errors import UserError
from hrcam.quiet import quiet_third_party, set_verbose

COMMAND_MODULES = [
    # one line per command-group module; each adds its own line when it lands
    "hrcam.cli.data",
    "hrcam.cli.train",
    "hrcam.cli.evaluate",
    "hrcam.cli.compare",
    "hrcam.cli.explain",
    "hrcam.cli.demo",
]


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem (and where to look), exit code 2."""

    def parse_known_args(self, args=None, namespace=None):  # noqa: D102 - argparse's
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {self._unknown_option(message)} (see '{self.prog} --help')\n")

    def _unknown_option(self, message: str) -> str:
        """``--bogus 32`` before an optional sub-command reads as "invalid choice: '32'": name the option."""
        import re

        m = re.match(r"argument [^:]*: invalid choice: '([^']*)'", message)
        argv = getattr(self, "_argv", [])
        if m and m.group(1) in argv:
            i = argv.index(m.group(1))
            prev = argv[i - 1] if i > 0 else ""
            if prev.startswith("-") and prev.split("=")[0] not in self._option_string_actions:
                return f"unrecognized arguments: {prev} {m.group(1)}"
        return message


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hrcam",
        description=(
            "High-resolution class activation maps: train HR-CAM models (HalfModel -> FullModel), "
            "refine their maps with the post-processing pipeline, and measure any map's "
            "localization and faithfulness."
        ),
        epilog=(
            "environment:\n"
            f"  {ALLOCATOR_ENV}=tcmalloc|system  the command preloads gperftools' tcmalloc where it is installed\n"
            "      (Debian/Ubuntu: libtcmalloc-minimal4; 'make install' adds it where it may): it reuses freed\n"
            "      memory instead of mapping fresh pages, about 2x the img/s of CPU training at 224 px.\n"
            "      'system' keeps glibc's malloc. Same numbers either way."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from hrcam import __version__
    from hrcam.allocator import active

    parser.add_argument("--version", action="version", version=f"hrcam {__version__} (memory allocator: {active()})",
                        help="show the version and the memory allocator in use, and exit")
    parser.add_argument("--verbose", action="store_true",
                        help="show every message of the libraries underneath (Lightning's tips and banners, "
                             "deprecation warnings) that hrcam hides by default (see hrcam/quiet.py)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings reach a CLI user as one line, without the source line that raised them."""
    text = str(message)
    text = text[len("hrcam: "):] if text.startswith("hrcam: ") else text
    return f"hrcam: warning: {text}\n"


def _is_the_command() -> bool:
    """Whether this process is the ``hrcam`` command itself (console script or ``python -m hrcam.cli``),
    not a program that calls :func:`main`: only then may it re-execute itself."""
    arg0 = sys.argv[0] if sys.argv else ""
    return os.path.basename(arg0) == "hrcam" or arg0.endswith(os.path.join("hrcam", "cli", "__main__.py"))


def main(argv: list[str] | None = None) -> int:
    if argv is None and _is_the_command():
        try:  # tcmalloc, where installed: about 2x the CPU training speed (hrcam/allocator.py)
            reexec_with_tcmalloc()
        except ValueError as err:
            print(f"hrcam: error: {err}", file=sys.stderr)
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        set_verbose(True)
    import warnings

    warnings.formatwarning = _one_line_warning
    try:
        with quiet_third_party():
            return int(args.func(args) or 0)
    except UserError as err:
        print(f"hrcam: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumable = hasattr(args, "resume")
        print(f"hrcam: interrupted{'; resume with --resume' if resumable else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

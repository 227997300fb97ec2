"""``hrcam --help`` and ``hrcam <cmd> --help`` answer at once: parsing imports no torch or Lightning."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from hrcam.cli import build_parser

HEAVY = ("torch", "lightning", "pytorch_lightning", "torchvision", "matplotlib", "timm")

# Walks every (sub-)command in a fresh interpreter, runs its --help, and names the first command
# after which a heavy module is in sys.modules.
_PROBE = """
import contextlib, io, json, sys
from hrcam.cli import main
heavy = {heavy!r}
out = {{}}
for cmd in {commands!r}:
    with contextlib.redirect_stdout(io.StringIO()) as text:
        try:
            main([*cmd, "--help"])
        except SystemExit as e:
            code = e.code
    out[" ".join(cmd) or "(top level)"] = [code, len(text.getvalue()),
                                           sorted(m for m in heavy if m in sys.modules)]
print(json.dumps(out))
"""


def _commands(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*prefix, name))
    return found


def test_every_help_is_parsed_without_torch_or_lightning():
    commands = _commands(build_parser())
    # the tree as it is today: catches a walk that found nothing
    names = {" ".join(c) for c in commands}
    assert {"", "train", "train half", "train full", "train cam", "demo run", "compare", "explain"} <= names
    code = _PROBE.format(heavy=HEAVY, commands=[list(c) for c in commands])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report) == len(commands)
    for cmd, (exit_code, help_chars, heavy) in report.items():
        assert exit_code == 0 and help_chars > 100, (cmd, exit_code, help_chars)
        assert heavy == [], f"'hrcam {cmd} --help' imported {heavy}"



def test_demo_help_states_the_presets_decoder_epochs():
    """`hrcam demo run --help` names the FullModel epochs the preset really uses."""
    import re

    from hrcam.cli import build_parser
    from hrcam.workflows.demo.config import DISTRACTOR_FULL_EPOCHS, FULL_EPOCHS

    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    run = demo._subparsers._group_actions[0].choices["run"]
    text = " ".join(run.format_help().split())
    default, distractors = re.search(r"\(default: ([^)]*?); with --distractors ([^)]*?)\)", text).groups()
    said = dict((obj, int(n)) for n, obj in re.findall(r"(\d+) for (faithfulness|the seed's)", default))
    assert said == {"faithfulness": FULL_EPOCHS["faithfulness"], "the seed's": FULL_EPOCHS["reconstruction"]}
    said = dict((obj, int(n)) for n, obj in re.findall(r"(\d+) for (faithfulness)", distractors))
    assert said == DISTRACTOR_FULL_EPOCHS


def test_demo_help_states_the_presets_architectures():
    """`hrcam demo run --help` names the FC-DenseNet settings each preset really trains."""
    import re

    from hrcam.cli import build_parser
    from hrcam.workflows.demo.config import DEMO_ARCH, DISTRACTOR_ARCH

    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    run = demo._subparsers._group_actions[0].choices["run"]
    text = " ".join(run.format_help().split())
    default, distractors = re.search(r"FC-DenseNet; default: (.*?); with --distractors (.*?):", text).groups()

    def said(part):
        return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", part)}

    assert said(default) == {**DEMO_ARCH, "num_blocks": 4}
    assert {**DEMO_ARCH, **said(distractors)} == DISTRACTOR_ARCH

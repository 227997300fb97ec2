"""The import direction of the package: nothing imports a higher layer.

Layers, top to bottom (data flows down, imports point down)::

    5  cli                                  argument parsing only
    4  workflows                            demos: many steps end to end
    3  evaluation, train, api, viz          loops over data, training, the public API, pictures
    2  explain                              one Explainer per map method
    1  models, postprocessing, metrics, data
    0  errors, weights, jsonio, fileio,     file formats, error types, array
       normalization, debug, quiet,         helpers and process settings
       allocator                            shared by every layer

``viz`` (plotting, overlays, reports) sits with evaluation: it draws what lower layers compute
and is used by workflows and the CLI. Modules of one layer may import each other, but no two
modules may import each other (an import cycle). ``hrcam/__init__.py`` is the lazy public
facade and is not checked; ``from hrcam import X`` counts as an import of the module that
provides ``X``. Imports inside functions count: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import hrcam

SRC = Path(hrcam.__file__).resolve().parent

LAYERS = {
    "errors": 0, "weights": 0, "debug": 0, "jsonio": 0, "normalization": 0, "fileio": 0, "quiet": 0,
    "allocator": 0,
    "models": 1, "postprocessing": 1, "metrics": 1, "data": 1,
    "explain": 2,
    "evaluation": 3, "train": 3, "api": 3, "viz": 3,
    # compatibility paths documented in the README before the restructure
    "compare": 3, "pretrained": 3,
    "workflows": 4,
    "cli": 5,
}


def module_name(root: Path, path: Path, package: str) -> str:
    """``package.a.b`` for ``root/a/b.py`` (``root/a/__init__.py`` → ``package.a``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def imported_modules(source: str, name: str, is_package: bool, facade: dict[str, str]) -> set[str]:
    """Every module of the package that ``source`` (module ``name``) imports, at any depth."""
    pkg = name.split(".")[0]
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == pkg:
                out.update(facade.get(a.name, f"{pkg}.{a.name}") for a in node.names)
            else:  # ``from a import b``: ``b`` may be a module of ``a``
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)
    return {m for m in out if m == pkg or m.startswith(pkg + ".")}


def layer(module: str) -> int | None:
    """The layer of ``package.<first>.…`` (None for the facade itself)."""
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def import_graph(root: Path, package: str, facade: dict[str, str] | None = None) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every ``.py`` file under ``root``."""
    graph = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(root, path, package)
        graph[name] = imported_modules(path.read_text(), name, path.name == "__init__.py", facade or {})
    return graph


def upward_imports(root: Path, package: str = "hrcam", facade: dict[str, str] | None = None) -> list[str]:
    """``"a imports b (layer i → j)"`` for every import of a higher layer under ``root``."""
    bad = []
    for name, targets in import_graph(root, package, facade).items():
        here = layer(name)
        if here is None:
            continue
        for target in sorted(targets):
            if any(target.startswith(other + ".") for other in targets):
                continue  # ``from a import b`` is reported once, as ``a``
            there = layer(target)
            if there is not None and there > here:
                bad.append(f"{name} imports {target} (layer {here} -> {there})")
    return bad


def mutual_imports(root: Path, package: str = "hrcam") -> list[str]:
    """Pairs of modules that import each other."""
    graph = import_graph(root, package)
    return sorted(f"{a} <-> {b}" for a, ts in graph.items() for b in ts
                  if a < b and a in graph.get(b, ()))


def _facade() -> dict[str, str]:
    return {**hrcam._LAZY, **hrcam._MODULES}


def test_every_top_level_module_has_a_layer():
    names = {p.stem for p in SRC.iterdir() if (p.suffix == ".py" or p.is_dir()) and not p.name.startswith("_")}
    assert names - set(LAYERS) == set()


def test_no_module_imports_a_higher_layer():
    assert upward_imports(SRC, "hrcam", _facade()) == []


def test_no_two_modules_import_each_other():
    assert mutual_imports(SRC) == []


def _fake_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "fakepkg"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_checker_catches_a_planted_upward_import(tmp_path):
    root = _fake_tree(tmp_path, {
        "__init__.py": "",
        "models/__init__.py": "",
        "models/net.py": "import torch\nfrom hrcam.errors import UserError\n",
        # the planted one: a network importing the CLI lazily, inside a function
        "models/bad.py": "def f():\n    from hrcam.cli.train import register\n    return register\n",
        "explain/__init__.py": "from ..models import net\n",
        "cli/__init__.py": "from hrcam.workflows import demo\n",
    })
    assert upward_imports(root) == ["hrcam.models.bad imports hrcam.cli.train (layer 1 -> 5)"]


def test_checker_resolves_relative_and_facade_imports(tmp_path):
    root = _fake_tree(tmp_path, {
        "data/__init__.py": "",
        "data/a.py": "from ..workflows import demo\n",
        "data/b.py": "from hrcam import plotting\n",
        "data/c.py": "from . import a\n",
        "data/d.py": "import hrcam.data.c\n",
    })
    assert upward_imports(root, facade={"plotting": "hrcam.viz.plotting"}) == [
        "hrcam.data.a imports hrcam.workflows (layer 1 -> 4)",
        "hrcam.data.b imports hrcam.viz.plotting (layer 1 -> 3)",
    ]


def test_checker_finds_import_cycles(tmp_path):
    root = _fake_tree(tmp_path, {
        "data/a.py": "def f():\n    from hrcam.data import b\n",
        "data/b.py": "import hrcam.data.a\n",
    })
    assert mutual_imports(root) == ["hrcam.data.a <-> hrcam.data.b"]

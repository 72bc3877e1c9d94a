"""The package's shape: imports point down the pipeline, with no cycle, and no module too long to read."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sparseg"

LAYERS = [
    {"errors", "__init__"},
    {"config", "environment", "paths"},
    {"formats"},
    {"io", "runtime"},
    {"cases", "preprocessing", "metrics", "lesions", "plots", "atlas", "registration"},
    {"outputs"},
    {"zmap"},
    {"synth", "template", "baseline", "evaluation", "model", "losses", "augment"},
    {"derived"},
    {"networks"},
    {"data", "inference", "report"},
    {"quantization", "plausibility", "resume"},
    {"train", "weights", "reader", "submission"},
    {"segment"},
    {"batch", "container_job"},
    {"crossval"},
    {"ablation"},
    {"cli"},
    {"__main__"},
]
"""Each module may import modules of the layers above its own, never its own layer or one below: the order of
the README's stage table, from reading files to the commands. A subpackage (`formats`, `cli`) is one module here;
its own modules import each other freely."""

MAX_LINES = 650
"""A module longer than this is split (one concern per module: a reader finds one format's rules in one place)."""


def _unit(module: str) -> str:
    """The layer unit a dotted module name under sparseg belongs to: its top-level module or subpackage."""
    return module.split(".")[1] if "." in module else "__init__"


def _imports(path: Path) -> set[str]:
    """The layer units a module imports, at the top or inside functions (its own unit left out)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sparseg":
            if "." in node.module:
                found.add(_unit(node.module))
            else:  # from sparseg import x: x is a module or subpackage, or a name of __init__
                found.update(a.name if (PACKAGE / f"{a.name}.py").exists() or (PACKAGE / a.name).is_dir()
                             else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(_unit(a.name) for a in node.names if a.name.startswith("sparseg."))
    return found - {_own_unit(path)}


def _own_unit(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layer(unit: str) -> int:
    return next(index for index, layer in enumerate(LAYERS) if unit in layer)


def test_every_module_has_a_layer() -> None:
    assert {_own_unit(path) for path in _modules()} == set().union(*LAYERS)


def test_imports_point_down_the_pipeline() -> None:
    upward = []
    for path in _modules():
        for imported in sorted(_imports(path)):
            if _layer(imported) >= _layer(_own_unit(path)):
                upward.append(f"{path.relative_to(PACKAGE)} -> {imported}")
    assert upward == []


def test_no_module_is_too_long_to_read() -> None:
    long = {str(path.relative_to(PACKAGE)): n for path in _modules()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}

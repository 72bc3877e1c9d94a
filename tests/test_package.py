"""The package's shape: imports point down the pipeline, with no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sparseg"

LAYERS = [
    {"errors", "__init__"},
    {"config", "environment"},
    {"io", "runtime"},
    {"cases", "preprocessing", "metrics", "lesions", "plots", "atlas", "registration"},
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
the README's stage table, from reading files to the commands."""


def _imports(path: Path) -> set[str]:
    """The sparseg modules a module imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sparseg":
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from sparseg import x: x is a module, or a name of __init__
                found.update(a.name if (PACKAGE / f"{a.name}.py").exists() else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("sparseg."))
    return found - {path.stem}


def _layer(module: str) -> int:
    return next(index for index, layer in enumerate(LAYERS) if module in layer)


def test_every_module_has_a_layer() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert modules == set().union(*LAYERS)


def test_imports_point_down_the_pipeline() -> None:
    upward = []
    for path in sorted(PACKAGE.glob("*.py")):
        for imported in sorted(_imports(path)):
            if _layer(imported) >= _layer(path.stem):
                upward.append(f"{path.stem} -> {imported}")
    assert upward == []

"""docs/architecture.md names every module, and imports keep the layering it states."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "vmsniff"
DOC = (ROOT / "docs" / "architecture.md").read_text()

LAYERS = [
    {"exitcodes", "errors", "model", "durations", "formats", "manifest"},
    {"wire", "pcap", "filter", "dissect"},
    {"pipeline", "ovs", "ovn", "resolve", "flows"},
    {"receive", "capture", "mirror", "mirror_many", "mirror_ovn", "snoop", "frames"},
    {"cli", "__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _top(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_tops(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module.startswith("vmsniff") else []
            if node.module == "vmsniff":
                names = [f"vmsniff.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("vmsniff")]
        for name in names:
            parts = name.split(".")
            is_module = (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").exists()
            if len(parts) > 1 and is_module:  # not `from vmsniff import __version__`
                out.add(parts[1])
    return out


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_is_named_in_architecture_md(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    if rel.name == "__init__.py" and len(rel.parts) > 1:
        assert f"vmsniff/{rel.parent}/" in DOC or f"{rel.parent.name}/" in DOC
        return
    assert rel.name in DOC, f"docs/architecture.md does not mention {rel}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_keep_the_layers(path: Path) -> None:
    top = _top(path)
    if top == "__init__":
        return
    wrong = []
    for target in _imported_tops(path) - {top}:
        if top == "lab":
            if LAYER.get(target, 99) != 0:
                wrong.append(target)
        elif target == "lab":
            if top != "cli":
                wrong.append(target)
        elif LAYER.get(target, 99) > LAYER[top]:
            wrong.append(target)
    assert not wrong, f"vmsniff/{path.relative_to(PACKAGE)} ({top}) imports {sorted(wrong)}"

"""Imports run one way: training → export → core (issue 13, docs/architecture.md).

Read from the source with ``ast``, so a violation fails here even when it sits in a function body."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "src" / "napari_cellsynth" / "core"
TRAINING, EXPORT = REPO / "training", REPO / "export"
# what export may use of training: the networks (builders) and the data readers, never trainer scripts
LEAVES = {"nets", "data", "translocation_data", "mfish"}


def imports(path: Path, package: tuple[str, ...] | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against its package)."""
    package = package or path.relative_to(REPO).with_suffix("").parts
    if package[0] == "src":
        package = package[1:]
    elif package[0] in ("training", "export"):
        package = ("napari_cellsynth", *package)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level] if node.level else ()
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def under(names: set[str], prefix: str) -> set[str]:
    return {n for n in names if n == prefix or n.startswith(prefix + ".")}


@pytest.mark.parametrize("path", modules(CORE), ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_no_gui_no_torch_and_nothing_above_it(path):
    names = imports(path)
    for banned in ("torch", "napari", "qtpy", "PyQt5", "magicgui", "napari_cellsynth.training",
                   "napari_cellsynth.export", "napari_cellsynth._widgets", "napari_cellsynth.cli"):
        assert not under(names, banned), f"{path.name} imports {sorted(under(names, banned))}"


@pytest.mark.parametrize("path", modules(EXPORT), ids=lambda p: p.name)
def test_export_uses_only_networks_and_data_of_training(path):
    used = {n.split(".")[2] for n in under(imports(path), "napari_cellsynth.training") if n.count(".") >= 2}
    assert used <= LEAVES, f"{path.name} imports training.{sorted(used - LEAVES)} (trainer code)"


@pytest.mark.parametrize("path", [p for p in modules(TRAINING) if p.stem in LEAVES or "nets" in p.parts],
                         ids=lambda p: str(p.relative_to(TRAINING)))
def test_networks_and_data_import_no_trainer_and_no_export(path):
    names = imports(path)
    assert not under(names, "napari_cellsynth.export"), path.name
    used = {n.split(".")[2] for n in under(names, "napari_cellsynth.training") if n.count(".") >= 2}
    assert used <= LEAVES, f"{path.name} imports training.{sorted(used - LEAVES)}"


def test_trainers_do_not_import_experiments_or_the_demo():
    for path in TRAINING.glob("train_*.py"):
        used = {n.split(".")[2] for n in under(imports(path), "napari_cellsynth.training") if n.count(".") >= 2}
        assert not {u for u in used if u.startswith("experiment_") or u == "demo"}, path.name


def test_the_checker_sees_a_violation(tmp_path):
    """The rules above can fail: an export module that imports a trainer is caught."""
    bad = tmp_path / "export_probe.py"
    bad.write_text("def f():\n    from ..training.train_bbdm import main\n")
    names = imports(bad, ("napari_cellsynth", "export", "export_probe"))
    used = {n.split(".")[2] for n in under(names, "napari_cellsynth.training") if n.count(".") >= 2}
    assert used - LEAVES == {"train_bbdm"}

"""Imports run one way: training → export → core (issue 13, docs/architecture.md).

Read from the source with ``ast``, so a violation fails here even when it sits in a function body."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "napari_cellsynth"  # one source tree: everything installed lives here
CORE = PACKAGE / "core"
TRAINING, EXPORT = PACKAGE / "training", PACKAGE / "export"
# what export may use of training: the networks (with their builders), the data readers and the runs' typed records,
# never trainers
LEAVES = {"nets", "data", "records"}
LAYERS = ("records", "data", "nets", "reports", "trainers", "runner", "experiments", "study")  # training's subpackages, bottom up


def imports(path: Path, package: tuple[str, ...] | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against its package)."""
    package = package or path.relative_to(REPO / "src").with_suffix("").parts
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


# the one core module that runs a torch network (Cellpose's): it reads a Cellpose model file's tensors as Cellpose does
# (torch.load, weights_only), to learn the widths of one narrower than Cellpose's own
TORCH_THROUGH_CELLPOSE = {"segment.py"}


@pytest.mark.parametrize("path", modules(CORE), ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_no_gui_no_torch_and_nothing_above_it(path):
    names = imports(path)
    for banned in ("torch", "napari", "qtpy", "PyQt5", "magicgui", "napari_cellsynth.training",
                   "napari_cellsynth.export", "napari_cellsynth._widgets", "napari_cellsynth.cli"):
        if banned == "torch" and str(path.relative_to(CORE)) in TORCH_THROUGH_CELLPOSE:
            assert "cellpose" in {n.split(".")[0] for n in names}, f"{path.name} imports torch but not Cellpose"
            continue
        assert not under(names, banned), f"{path.name} imports {sorted(under(names, banned))}"


@pytest.mark.parametrize("path", modules(EXPORT), ids=lambda p: p.name)
def test_export_uses_only_networks_and_data_of_training(path):
    used = subpackages(imports(path))
    assert used <= LEAVES, f"{path.name} imports training.{sorted(used - LEAVES)} (trainer code)"


def subpackages(names: set[str]) -> set[str]:
    """training's subpackages (or top-level modules, e.g. demo) among imported names."""
    return {n.split(".")[2] for n in under(names, "napari_cellsynth.training") if n.count(".") >= 2}


# which of training's layers each layer may import (and whether it may import export): bottom up
ALLOWED = {"records": ({"records"}, False), "data": ({"data"}, False), "nets": ({"nets"}, False),
           "reports": ({"reports"}, False),
           "trainers": ({"records", "data", "nets", "reports", "trainers"}, False),
           # the experiments' one runner (arms × seeds, tasks here or on dask): the experiments and the study run on it
           "runner": ({"records", "data", "nets", "reports", "trainers", "runner"}, False),
           "experiments": ({"records", "data", "nets", "reports", "trainers", "runner", "experiments"}, True),
           # cellsynth study: it may not lean on the experiments' scripts
           "study": ({"records", "data", "nets", "reports", "trainers", "runner", "study"}, True)}


@pytest.mark.parametrize("path", [p for p in modules(TRAINING) if p.parent != TRAINING],
                         ids=lambda p: str(p.relative_to(TRAINING)))
def test_each_layer_of_training_imports_only_the_layers_below_it(path):
    layer = path.relative_to(TRAINING).parts[0]
    allowed, may_export = ALLOWED[layer]
    names = imports(path)
    assert subpackages(names) <= allowed, f"{layer}/{path.name} imports training.{sorted(subpackages(names) - allowed)}"
    assert may_export or not under(names, "napari_cellsynth.export"), f"{layer}/{path.name} imports export"


def test_training_is_split_into_its_layers():
    """No loose modules: every module of training/ sits in a layer's subpackage (the demo, the main job, aside)."""
    loose = {p.stem for p in TRAINING.glob("*.py")} - {"__init__", "demo"}
    assert not loose, loose
    assert {p.name for p in TRAINING.iterdir() if (p / "__init__.py").is_file()} == set(LAYERS)


def test_one_source_tree_and_packages_found_not_listed():
    """Issue 34: no package sits beside src/, and pyproject finds the packages instead of listing them."""
    import tomllib

    assert not any((REPO / name / "__init__.py").is_file() for name in ("training", "export"))
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["packages"] == {"find": {"where": ["src"]}} and "package-dir" not in setuptools


def test_the_checker_sees_a_violation(tmp_path):
    """The rules above can fail: an export module that imports a trainer is caught."""
    bad = tmp_path / "export_probe.py"
    bad.write_text("def f():\n    from ..training.trainers.bbdm import train\n")
    names = imports(bad, ("napari_cellsynth", "export", "export_probe"))
    assert subpackages(names) - LEAVES == {"trainers"}


def test_core_modules_import_each_other_without_cycles():
    """No two core modules need each other, not even through a function-local import (which would hide the cycle
    from Python's import machinery but not from a reader)."""
    paths = {".".join(p.relative_to(REPO / "src").with_suffix("").parts).removesuffix(".__init__"): p
             for p in modules(CORE)}
    graph = {}
    for name, path in paths.items():
        package = path.relative_to(REPO / "src").with_suffix("").parts
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level] if node.level else ()
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                # `from . import models` needs the module models, not the package's __init__
                deps |= {f"{module}.{a.name}" if f"{module}.{a.name}" in paths else module for a in node.names}
        graph[name] = {d for d in deps if d in paths} - {name}
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, " ; ".join(" → ".join(c.removeprefix("napari_cellsynth.core.") for c in cycle) for cycle in cycles)


def imported_names(path: Path, package: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """``(line, module, name)`` for every ``from napari_cellsynth… import name`` in ``path``, function bodies too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level] if node.level else ()
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if module.split(".")[0] == "napari_cellsynth":
                found += [(node.lineno, module, alias.name) for alias in node.names if alias.name != "*"]
    return found


def test_every_name_imported_from_the_package_exists():
    """A name moved to another module leaves no import behind, not even one inside a function that only a long run
    reaches (the study's bundles once imported a card section from where it no longer lived)."""
    import importlib

    missing = []
    for path in [*modules(PACKAGE), *modules(REPO / "tests"), *modules(REPO / "bench")]:
        package = path.relative_to(REPO / "src").with_suffix("").parts if PACKAGE in path.parents else ()
        for line, module, name in imported_names(path, package):
            target = importlib.import_module(module)
            if not hasattr(target, name):
                try:
                    importlib.import_module(f"{module}.{name}")
                except ModuleNotFoundError:
                    missing.append(f"{path.relative_to(REPO)}:{line}: {module}.{name}")
    assert not missing


def test_the_reader_widgets_and_a_batch_part_load_without_the_whole_batch():
    """napari asks the reader about files it opens, and imports a widget's module on the main thread when the Plugins
    menu opens it: reading a finished run, opening the Batch or UMAP filter widget, or a trainer naming a model as a
    batch record does, imports neither the batch's jobs nor scikit-learn and UMAP (results §2e: the reader 1.08 s →
    0.14 s; the widgets load them in their worker thread when they run); the package's names still load when asked
    for."""
    from conftest import child_json

    loaded = child_json("import json, sys\n"
                        "import napari_cellsynth._reader\n"
                        "from napari_cellsynth.core.batch.record import cellpose_identity\n"
                        "import napari_cellsynth._widgets.batch, napari_cellsynth._widgets.umap_filter\n"
                        "light = sorted(m for m in ('sklearn', 'umap', 'napari_cellsynth.core.batch.job') if m in sys.modules)\n"
                        "from napari_cellsynth.core.batch import BatchSettings, run_batch\n"
                        "print(json.dumps({'light': light, 'job': 'napari_cellsynth.core.batch.job' in sys.modules}))")
    assert loaded == {"light": [], "job": True}

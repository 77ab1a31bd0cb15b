"""The package's layers: a module imports only from its own layer or lower ones.

Reads every module's imports with `ast` (imports inside functions included)
and fails when a lower layer reaches up, or when a new top-level module has
not been given a layer here and in docs/architecture.md.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "kerasvision"

# Lowest first; the same order as docs/architecture.md.
LAYERS = (
    ("validation", "hardware", "flops", "visualize", "boxes"),
    ("data",),
    ("backbones", "layers", "kernels"),
    ("losses", "metrics", "explain", "adversarial"),
    ("models",),
    ("training",),
    ("export",),
    ("tasks",),
)
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def _top_level(module_path):
    """`kerasvision/data/shapes.py` -> "data"; `kerasvision/losses.py` -> "losses"."""
    relative = module_path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imported_top_levels(source):
    """Top-level kerasvision modules a module's source imports, with line numbers."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != "kerasvision":
                continue
            if len(parts) > 1:
                found.append((parts[1], node.lineno))
            else:  # from kerasvision import data, metrics
                found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "kerasvision" and len(parts) > 1:
                    found.append((parts[1], node.lineno))
    return found


def _modules():
    return sorted(path for path in PACKAGE.rglob("*.py") if path != PACKAGE / "__init__.py")


def test_every_module_has_a_layer():
    unplaced = sorted({_top_level(path) for path in _modules()} - set(LAYER_OF))
    assert not unplaced, (
        f"give {unplaced} a layer in LAYERS (tests/test_architecture.py) and in "
        "docs/architecture.md"
    )


def test_no_module_imports_from_a_higher_layer():
    violations = []
    for path in _modules():
        own = _top_level(path)
        for imported, line in _imported_top_levels(path.read_text()):
            if imported in LAYER_OF and LAYER_OF[imported] > LAYER_OF.get(own, len(LAYERS)):
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}, layer "
                                  f"{LAYER_OF[own]}) imports {imported} (layer {LAYER_OF[imported]})")
    assert not violations, "\n".join(violations)


def test_only_tasks_read_parsed_flags():
    readers = []
    for path in _modules():
        if _top_level(path) == "tasks":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            imports_argparse = (
                isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names)
            ) or (isinstance(node, ast.ImportFrom) and node.module == "argparse")
            reads_args = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                          and node.value.id == "args")
            if imports_argparse or reads_args:
                readers.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not readers, readers


def test_the_checker_sees_a_violation():
    source = "from kerasvision.tasks.cli import run\nimport kerasvision.models.unet\n"
    assert _imported_top_levels(source) == [("tasks", 1), ("models", 2)]
    assert _imported_top_levels("from kerasvision import data, metrics\n") == [
        ("data", 1), ("metrics", 1)]

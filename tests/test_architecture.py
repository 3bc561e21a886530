"""The layers of ``deim/`` (docs/architecture.md): every import, function-local ones included,
points down the list or stays inside its own folder."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deim"

# lowest first; a module may import its own folder (or group) and anything of a lower rank
LAYERS = [
    ("provenance", "cache", "overrides", "zoo", "download", "weights"),  # leaf helpers
    ("data",),
    ("presets",),
    ("models",),
    ("losses",),
    ("engine",),
    ("detector", "pretrained"),  # the inference API, beside the engine
    ("experiments",),
    ("analysis",),
    ("report",),
    ("cli", "commands", "cli_defaults", "cli_errors", "cli_types", "__main__"),
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str:
    """``deim.engine.fit`` -> ``engine``; ``deim.cache`` -> ``cache``."""
    return module.split(".")[1]


def _imports(path: Path) -> list[tuple[str, int]]:
    """The ``deim.*`` modules ``path`` imports (anywhere in the file) with their line numbers."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deim.") and node.level == 0:
            out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("deim.")]
    return out


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.stem != "__init__"}
    assert parts <= set(RANK), f"add to LAYERS (and docs/architecture.md): {sorted(parts - set(RANK))}"


def test_imports_only_point_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if rel.name == "__init__" and len(rel.parts) == 2:
            continue  # deim/__init__.py re-exports lazily, from the top
        source = _part(".".join(rel.parts)) if len(rel.parts) > 2 else rel.parts[1]
        for module, line in _imports(path):
            target = _part(module)
            if RANK[target] > RANK[source]:  # a group of top-level modules may import itself
                upward.append(f"{rel}.py:{line} imports {module} ({source} -> {target})")
    assert not upward, "\n".join(upward)


def test_presets_and_the_command_line_parser_do_not_import_torch():
    """``deim.presets`` is plain data, and ``deim --help`` answers without torch (docs/architecture.md)."""
    import subprocess
    import sys

    code = ("import sys, deim.presets.catalog, deim.presets.resolve, deim.cli; deim.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""Every paper notebook: its .py/.ipynb pair is in sync, it takes papermill parameters, and it
executes at `smoke` scale with papermill, writing figures/tables with provenance."""
from __future__ import annotations

import json

import jupytext
import nbformat
import pytest

from deim.report.runner import run_notebook

from conftest import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_in_sync(path):
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `make notebooks-sync`"
    assert _cells(jupytext.read(path)) == _cells(nbformat.read(ipynb, as_version=4)), (
        f"{path.name} and {ipynb.name} differ: run `make notebooks-sync`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(path):
    nb = jupytext.read(path)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    namespace: dict = {}
    exec(tagged[0].source, namespace)  # parameters cells hold plain assignments only
    assert namespace["scale"] in ("smoke", "reduced", "full")
    assert "figures_dir" in namespace


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_at_smoke_scale(path, tmp_path):
    figures = tmp_path / "figures"
    run = run_notebook(path, "smoke", figures, tmp_path / "executed", REPO_ROOT)
    assert run.ok, run.error
    assert (tmp_path / "executed" / f"{path.stem}.ipynb").exists()
    pngs = sorted(figures.glob(f"{path.stem}__*.png"))
    tables = sorted(figures.glob(f"{path.stem}__*.csv"))
    assert pngs or tables, "a paper notebook must write at least one figure or table"
    for out in pngs + tables:
        prov = json.loads((figures / f"{out.stem}.provenance.json").read_text())
        assert prov["scale"] == "smoke" and prov["notebook"] == path.stem
        assert "torch" in prov["packages"] and "wall_time_s" in prov
    for table in tables:
        assert table.with_suffix(".md").read_text().count("|") > 4

"""Provenance records, the figure/table writer and the notebook runner's discovery and index."""
from __future__ import annotations

import json
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from deim.cli import main  # noqa: E402
from deim.report.runner import NotebookRun, discover, write_index  # noqa: E402
from deim.report.writer import FigureWriter, markdown_table  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402


def test_writer_outputs_and_provenance(tmp_path):
    w = FigureWriter("99_test", "smoke", tmp_path, params={"gamma": 1.5})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = w.save_figure(fig, "line")
    md = w.save_table(pd.DataFrame({"a": [1, 2], "b": [0.5, 0.25]}), "tab", caption="A caption.")
    assert png.name == "99_test__line.png" and png.stat().st_size > 1000
    assert md.read_text().startswith("A caption.\n\n| a | b |")
    assert (tmp_path / "99_test__tab.csv").read_text().splitlines()[0] == "a,b"
    prov = json.loads((tmp_path / "99_test__line.provenance.json").read_text())
    assert prov["params"] == {"gamma": 1.5} and prov["scale"] == "smoke" and prov["kind"] == "figure"
    assert set(prov["git"]) == {"commit", "dirty"} and prov["machine"]["cpu_count"] >= 1


def test_writer_rejects_unknown_scale(tmp_path):
    with pytest.raises(ValueError, match="scale must be one of"):
        FigureWriter("x", "huge", tmp_path)


def test_markdown_table_formats_floats():
    assert markdown_table(pd.DataFrame({"x": [1.234567]})).splitlines()[-1] == "| 1.235 |"


def test_discover_and_only():
    names = [p.stem for p in discover(REPO_ROOT / "notebooks")]
    assert names == sorted(names) and names[0] == "00_train" and "11_training_cost" in names
    assert [p.stem for p in discover(REPO_ROOT / "notebooks", ["02"])] == ["02_schedules"]
    with pytest.raises(ValueError, match="unknown notebook"):
        discover(REPO_ROOT / "notebooks", ["77_nothing"])
    with pytest.raises(FileNotFoundError, match="no notebooks folder"):
        discover(REPO_ROOT / "nowhere")


def test_index_keeps_earlier_runs(tmp_path):
    index = tmp_path / "INDEX.md"
    write_index(index, "smoke", [NotebookRun("01_a", 1.0, True, outputs=["01_a__x.png"])])
    write_index(index, "smoke", [NotebookRun("02_b", 2.0, False, error="boom")])
    text = index.read_text()
    assert "| 01_a | ok | 1.0 | [01_a__x.png](01_a__x.png) |" in text and "| 02_b | failed | 2.0 | - |" in text


def test_cli_errors_are_one_line(capsys):
    assert main(["schedule", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model preset 'nope'" in err
    with pytest.raises(SystemExit):
        main(["reproduce", "--scale", "huge"])


def test_rewritten_figures_do_not_make_the_tree_dirty_but_code_does(tmp_path):
    from deim.provenance import git_state

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "table.md").write_text("| a |\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "figures" / "table.md").write_text("| b |\n")
    assert git_state(tmp_path / "figures")["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)["dirty"] is True

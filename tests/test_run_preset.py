"""One preset resolved once per run (``deim.engine.run_preset``) and the engine's small signatures."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from deim.engine.config import TrainConfig
from deim.engine.run_preset import resolve_run_preset
from deim.presets.resolve import resolve_model, resolve_preset
from deim.presets.catalog import get_preset, list_presets
from deim.presets.models import baseline_criterion

ENGINE = Path(__file__).resolve().parents[1] / "deim" / "engine"


def test_resolved_parts_match_the_builders_own_resolution():
    cfg = TrainConfig.from_preset("deim_dfine_s", model={"num_queries": 30}, criterion={"criterion.gamma": 1.0})
    run = resolve_run_preset(cfg, cfg.resolved_schedule(), num_classes=3)
    assert run == resolve_run_preset(cfg, cfg.resolved_schedule(), 3, resolve_preset(cfg.preset, **cfg.model))
    assert run.model.to_dict() == resolve_model("deim_dfine_s", num_queries=30, num_classes=3).to_dict()
    assert run.criterion.criterion.gamma == 1.0 and run.model.criterion.gamma == 1.5
    assert run.postprocessor.postprocessor.num_top_queries == 30 * 3  # capped at queries x classes
    assert run.schedule == cfg.resolved_schedule()


def test_explicit_top_k_is_kept():
    cfg = TrainConfig.from_preset("deim_dfine_s", model={"num_queries": 30, "postprocessor.num_top_queries": 50})
    assert resolve_run_preset(cfg, cfg.resolved_schedule(), 3).postprocessor.postprocessor.num_top_queries == 50


@pytest.mark.parametrize("name", list_presets())
def test_optimiser_groups_come_from_the_preset_entry(name):
    cfg = TrainConfig.from_preset(name)
    optimizer = resolve_run_preset(cfg, cfg.resolved_schedule(), 80).optimizer_config()
    assert optimizer.no_decay_bias == name.endswith("dfine_n")  # the official N configs exempt biases
    assert optimizer.lr == cfg.resolved_schedule().lr


@pytest.mark.parametrize("name", [n for n in list_presets() if n.startswith("deim_")])
def test_baseline_criterion_is_the_baselines_own(name):
    assert baseline_criterion(get_preset(name).model) == get_preset(name.removeprefix("deim_")).model.criterion


def test_no_engine_function_takes_more_than_8_parameters():
    too_many = []
    for path in sorted(ENGINE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                if len(names) + (a.vararg is not None) + (a.kwarg is not None) > 8:
                    too_many.append(f"{path.name}:{node.name}")
    assert not too_many


@pytest.mark.parametrize("module", ["deim.presets.catalog", "deim.presets.resolve", "deim.presets.schedules"])
def test_preset_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0

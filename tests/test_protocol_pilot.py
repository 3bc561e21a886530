"""The pilot's decision rule on hand-made run logs whose answers are known."""
from __future__ import annotations

import pytest
import torch

from deim.analysis.protocol_pilot import best_within_budget, choose, judge, last_quarter_gain
from deim.experiments.protocol import PILOT_CANDIDATES, PILOT_CHOICE, PILOT_RULE, PROTOCOLS, get_protocol
from deim.experiments.runs import RunResult, RunSpec
from deim.experiments.settings import notebook_runs, protocol_pilot, reproduction_runs

from conftest import notebook_sources

RULE = {"min_AP": 0.30, "min_AP50": 0.50, "max_last_quarter_gain": 0.10, "max_seed_spread": 0.015,
        "max_reproduce_minutes": 120.0}


def _run(aps: list[float], ap50: float = 0.6, seconds: float = 600.0, seed: int = 0) -> RunResult:
    history = [{"epoch": e, "AP": ap, "AP50": ap50} for e, ap in enumerate(aps)]
    return RunResult(key=f"k{seed}", spec={"seed": seed}, history=history, final={"AP": aps[-1], "AP50": ap50},
                     seconds=seconds, checkpoint="", provenance={})


def test_last_quarter_gain_reads_the_value_before_the_last_quarter():
    # 8 epochs: the last quarter is epochs 6 and 7, so the reference is epoch 5's AP
    assert last_quarter_gain(_run([0.1, 0.2, 0.25, 0.28, 0.3, 0.32, 0.35, 0.4])) == pytest.approx((0.4 - 0.32) / 0.4)
    assert last_quarter_gain(_run([0.0, 0.0, 0.0, 0.0])) == 1.0


def test_judge_passes_a_flat_converged_candidate_and_names_each_failure():
    flat = [_run([0.1, 0.25, 0.30, 0.31, 0.32, 0.33, 0.335, 0.34], seed=s) for s in (0, 1)]
    ok = judge("A", flat, RULE, study_units=33, jobs=2, fixed_minutes=10)
    assert ok.passed and ok.seconds_per_unit == 300.0
    assert ok.estimated_minutes == pytest.approx(33 * 300 / 2 / 60 + 10)

    climbing = [_run([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5], seed=s) for s in (0, 1)]
    v = judge("B", climbing, RULE, study_units=33, jobs=2, fixed_minutes=10)
    assert not v.checks["flattens"] and v.checks["AP"]

    weak = [_run([0.1, 0.2, 0.2, 0.2], ap50=0.4, seed=s) for s in (0, 1)]
    v = judge("C", weak, RULE, study_units=33, jobs=2, fixed_minutes=10)
    assert not v.checks["AP"] and not v.checks["AP50"] and v.checks["flattens"]

    apart = [_run([0.3, 0.31, 0.32, 0.33]), _run([0.3, 0.33, 0.34, 0.35], seed=1)]
    assert not judge("D", apart, RULE, study_units=33, jobs=2, fixed_minutes=10).checks["seeds agree"]

    slow = [_run([0.3, 0.31, 0.32, 0.33], seconds=1200, seed=s) for s in (0, 1)]
    assert not judge("E", slow, RULE, study_units=33, jobs=2, fixed_minutes=10).checks["fits budget"]

    assert choose([v, ok]) is ok and choose([v]) is None

    # none meets the rule: the best AP among the candidates that fit the budget, never a slow one
    slower_better = judge("F", [_run([0.2, 0.3, 0.4, 0.45], seconds=1200, seed=s) for s in (0, 1)], RULE,
                          study_units=33, jobs=2, fixed_minutes=10)
    low = judge("G", [_run([0.05, 0.1, 0.15, 0.2], seed=s) for s in (0, 1)], RULE, study_units=33, jobs=2,
                fixed_minutes=10)
    higher = judge("H", [_run([0.1, 0.2, 0.25, 0.3], seed=s) for s in (0, 1)], RULE, study_units=33, jobs=2,
                   fixed_minutes=10)
    assert best_within_budget([slower_better, low, higher]) is higher
    assert best_within_budget([slower_better]) is None


def test_judge_needs_two_seeds():
    with pytest.raises(ValueError, match="two seeds"):
        judge("A", [_run([0.3])], RULE, study_units=1, jobs=2, fixed_minutes=0)


def test_reduced_is_the_chosen_candidate_and_shares_its_runs():
    """``reduced`` equals the kept pilot candidate field for field (but its name and seeds), so the
    pilot's baseline runs are the study's runs of the same seeds (same run keys)."""
    assert PILOT_RULE == RULE
    chosen = PILOT_CANDIDATES["reduced"][PILOT_CHOICE]
    reduced = PROTOCOLS["reduced"]
    assert get_protocol(chosen.scale) is chosen
    pilot_keys = {s.key() for s in protocol_pilot("reduced")[PILOT_CHOICE]}
    study_keys = {s.key() for s in reproduction_runs("reduced")}
    assert pilot_keys <= study_keys
    assert reduced.model == chosen.model and reduced.epochs == chosen.epochs and reduced.lr == chosen.lr
    other = {s.key() for name, specs in protocol_pilot("reduced").items() if name != PILOT_CHOICE for s in specs}
    assert not other & study_keys


def test_runs_per_notebook():
    assert {s.key() for s in notebook_runs("smoke", notebook_sources("12"))} == {s.key() for v in protocol_pilot("smoke").values()
                                                                 for s in v}
    assert notebook_runs("smoke", notebook_sources("01", "02")) == []
    assert {s.key() for s in notebook_runs("smoke", notebook_sources("08"))} == {s.key() for s in reproduction_runs("smoke")}


def test_snapshots_are_evenly_spaced_and_include_the_last_epoch():
    from deim.experiments.protocol import snapshot_epochs

    assert snapshot_epochs(6, 3) == (1, 3, 5)
    assert snapshot_epochs(12, 3) == (3, 7, 11)
    assert snapshot_epochs(2, 3) == (0, 1)
    assert snapshot_epochs(5, 0) == ()
    assert RunSpec(scale="pilot_A", epoch_factor=2).train_config().snapshot_epochs == (3, 7, 11)
    assert RunSpec(scale="reduced").train_config().snapshot_epochs == (1, 3, 5)  # 6 epochs


def test_ema_lag_scores_the_ema_and_the_raw_weights_of_a_checkpoint(tmp_path):
    """A hand-made checkpoint whose EMA and raw weights differ (two initialisations): each score
    comes from the weights it names, and the EMA's decay and steps are read from the checkpoint."""
    from deim import build_model
    from deim.analysis.ema_lag import ema_horizon, ema_vs_raw, with_weights
    from deim.engine.data_build import build_eval_data
    from deim.engine.inference import load_for_inference
    from deim.experiments.runs import RunSpec

    assert ema_horizon(0.99) == pytest.approx(100) and ema_horizon(0.0) == 1
    with pytest.raises(ValueError, match="decay"):
        ema_horizon(1.0)
    cfg = RunSpec(scale="smoke").train_config()
    val, _ = build_eval_data(cfg.data, seed=cfg.seed)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_model(cfg.preset, **cfg.model, num_classes=val.label_map.num_classes).state_dict())
    state = {"config": cfg.to_dict(), "label_map": val.label_map.to_dict(), "model": models[1],
             "ema": {"module": models[0], "updates": 7, "decay": 0.9999, "warmups": 4}}
    for which, expected in (("ema", models[0]), ("raw", models[1])):
        loaded = load_for_inference(with_weights(state, which)).model.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    with pytest.raises(ValueError, match="which"):
        with_weights(state, "best")
    path = tmp_path / "last.pth"
    torch.save(state, path)
    m = ema_vs_raw(path)
    assert m["steps"] == 7 and m["ema_decay"] == 0.9999 and m["ema_horizon"] == pytest.approx(10_000)
    assert all(0.0 <= m[k] <= 1.0 for k in ("AP_ema", "AP_raw", "AP50_ema", "AP50_raw"))
    torch.save({"model": models[0]}, path)
    with pytest.raises(ValueError, match="not a deim training checkpoint"):
        ema_vs_raw(path)

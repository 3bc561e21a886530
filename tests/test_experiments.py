"""Run specs, their keys and the settings the reproduction notebooks share."""
from __future__ import annotations

import pytest
import torch

from deim.engine.checkpointing import snapshot_path
from deim.experiments.protocol import PROTOCOLS, get_protocol
from deim.experiments.parallel import train_missing, train_notebook_runs
from deim.experiments.runs import RunCache, RunSpec
from deim.experiments.settings import (declared_groups, dense_o2o_mal_ablation, gamma_sweep, mosaic_mixup_grid,
                                      notebook_runs, protocol_pilot, reproduction_runs, unique_specs)

from conftest import REPO_ROOT, notebook_sources


def test_equal_settings_share_a_key_and_any_change_makes_a_new_one():
    a, b = RunSpec("smoke"), RunSpec("smoke")
    assert a.key() == b.key() and len(a.key()) == 12
    for other in (RunSpec("smoke", seed=1), RunSpec("smoke", gamma=2.0), RunSpec("smoke", mixup_prob=0.0),
                  RunSpec("smoke", loss="vfl"), RunSpec("smoke", epoch_factor=2), RunSpec("reduced")):
        assert other.key() != a.key()


def test_train_config_carries_the_setting():
    cfg = RunSpec("smoke", loss="vfl", gamma=2.0, mosaic_prob=0.0, mixup_prob=0.5, epoch_factor=2, seed=3).train_config()
    p = get_protocol("smoke")
    s = cfg.resolved_schedule()
    assert s.epochs == 2 * p.epochs and s.total_batch_size == p.batch_size
    assert s.aug.mosaic_prob == 0.0 and s.aug.mixup_prob == 0.5 and s.aug.base_size == p.image_size
    assert cfg.seed == 3 and cfg.data.dataset == "fashion" and cfg.data.fashion_scale == p.fashion_scale
    assert cfg.criterion["criterion.losses"][0] == "vfl" and "loss_vfl" in cfg.criterion["criterion.weight_dict"]
    assert RunSpec("smoke").train_config().criterion == {"criterion.gamma": 1.5}
    assert cfg.model == p.model


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="loss"):
        RunSpec("smoke", loss="focal")
    with pytest.raises(ValueError, match="unknown scale"):
        RunSpec("huge").train_config()
    with pytest.raises(ValueError, match="data_root"):
        RunSpec("full").train_config()


def test_notebooks_share_runs_where_the_setting_is_the_same():
    ablation = dense_o2o_mal_ablation("reduced")
    grid = mosaic_mixup_grid("reduced")
    gammas = gamma_sweep("reduced")
    keys = lambda specs: [s.key() for s in specs]  # noqa: E731
    assert keys(ablation["baseline (VFL), 1x"]) == keys(grid["mosaic 0, mixup 0"])
    assert keys(ablation["+ Dense O2O, 1x"]) == keys(grid["mosaic 0.5, mixup 0.5"])
    assert keys(ablation["DEIM (Dense O2O + MAL), 1x"]) == keys(gammas["γ=1.5"])
    seeds = PROTOCOLS["reduced"].seeds
    assert len(seeds) >= 2  # paired tests need two seeds at least (the design asks for three)
    assert all(len(v) == len(seeds) for v in (*ablation.values(), *grid.values(), *gammas.values()))
    assert {1.0, 1.5, 2.0} <= set(PROTOCOLS["reduced"].gammas)


def test_reproduction_runs_lists_each_shared_run_once():
    runs = reproduction_runs("reduced")
    keys = [s.key() for s in runs]
    assert len(keys) == len(set(keys))
    p = get_protocol("reduced")
    settings = len(p.gammas) + len(p.mix_grid) ** 2 + 2  # + the 2x baseline and "+ MAL" without Dense O2O
    assert len(runs) == settings * len(p.seeds)
    assert sum(s.epoch_factor for s in runs) == (settings + 1) * len(p.seeds)


def test_each_notebook_that_reads_runs_declares_the_settings_it_reads():
    for path in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        source = path.read_text()
        reads_runs = "run_settings(" in source or "RunCache()" in source
        assert reads_runs == bool(declared_groups(source)), path.name
    assert declared_groups(notebook_sources("06")[0].read_text()) == (gamma_sweep,)
    assert declared_groups(notebook_sources("12")[0].read_text()) == (protocol_pilot,)  # reproduction_runs is no group
    assert declared_groups("from deim.experiments.settings import gamma_sweep, gamma_sweep\nimport os") == (gamma_sweep,)
    deim_runs = dense_o2o_mal_ablation("reduced")["DEIM (Dense O2O + MAL), 1x"]
    assert deim_runs[0] == RunSpec("reduced")  # notebook 00's run


def test_notebook_runs_are_the_study_the_pilot_or_nothing():
    keys = lambda specs: [s.key() for s in specs]  # noqa: E731
    study, pilot = keys(reproduction_runs("smoke")), keys(unique_specs([protocol_pilot("smoke")]))
    assert keys(notebook_runs("smoke", notebook_sources("06"))) == study  # any study notebook brings the whole study
    assert keys(notebook_runs("smoke", notebook_sources("12"))) == pilot
    assert keys(notebook_runs("smoke", notebook_sources("12", "13", "01"))) == list(dict.fromkeys(pilot + study))  # pilot first
    assert notebook_runs("smoke", notebook_sources("01", "02", "03", "04", "10")) == []
    assert train_notebook_runs("smoke", notebook_sources("01", "10"), cache=RunCache("/nonexistent"), progress=False) == []


def test_parallel_workers_fill_the_cache_and_report_a_failing_run(tmp_path):
    cache = RunCache(tmp_path / "runs")
    specs = [RunSpec("smoke", seed=0), RunSpec("smoke", loss="vfl", gamma=2.0, seed=0)]
    assert sorted(train_missing(specs, jobs=2, cache=cache, progress=False)) == sorted(s.key() for s in specs)
    for spec in specs:
        result = cache.load(spec)
        assert result is not None and result.key == spec.key() and len(result.history) == spec.protocol.epochs
        assert f"run {spec.key()} finished" in (cache.folder(spec) / "worker.log").read_text()  # the worker's line
        for epoch in spec.train_config().snapshot_epochs:  # EMA snapshots for the analyses of notebook 13
            snap = torch.load(snapshot_path(cache.folder(spec), epoch), map_location="cpu", weights_only=True)
            assert snap["epoch"] == epoch and "decoder.dec_score_head.0.weight" in snap["ema"]
        assert spec.train_config().snapshot_epochs == (0, 1)
    assert train_missing(specs, jobs=2, cache=cache, progress=False) == []  # everything cached now
    missing = RunSpec("full", data_root=str(tmp_path / "no-coco"))
    with pytest.raises(RuntimeError, match="failed with exit code"):
        train_missing([missing], jobs=2, cache=cache, progress=False)
    assert cache.load(missing) is None


def test_a_canvas_recipe_changes_the_data_and_the_run_key(tmp_path, monkeypatch):
    """A protocol's ``canvas`` reaches the generated images (their manifest) and the run key; a
    protocol without one keeps the key it had before the field existed (no ``fashion_canvas`` in it)."""
    import dataclasses
    import json

    from deim.engine.config import DataConfig
    from deim.engine.data_build import data_paths

    monkeypatch.setenv("DEIM_CACHE", str(tmp_path))
    plain_key, bare = RunSpec("smoke").key(), RunSpec("smoke").train_config()
    assert bare.data.fashion_canvas == {}
    monkeypatch.setitem(PROTOCOLS, "smoke", dataclasses.replace(PROTOCOLS["smoke"], canvas={"clutter_per_image": (0, 0)}))
    clean = RunSpec("smoke")
    assert clean.train_config().data.fashion_canvas == {"clutter_per_image": (0, 0)}
    assert clean.key() != plain_key
    paths = data_paths(clean.train_config().data)
    default = data_paths(DataConfig(fashion_scale="smoke"))
    assert paths.train_ann != default.train_ann
    manifest = json.loads((paths.train_ann.parent / "manifest.json").read_text())
    assert manifest["params"]["clutter_per_image"] == [0, 0]


def test_the_protocol_sets_the_ema_decay():
    assert RunSpec("reduced").train_config().resolved_schedule().ema_decay == PROTOCOLS["reduced"].ema_decay
    assert PROTOCOLS["smoke"].ema_decay is None
    assert RunSpec("smoke").train_config().resolved_schedule().ema_decay == 0.9999  # the paper's


def test_standard_ops_reach_the_pipeline_and_the_key_and_round_trip(monkeypatch):
    """A protocol's ``standard_ops`` reaches the run's schedule, changes the key, and survives the
    config's dict round trip; a protocol without it keeps the key it had before the field existed."""
    import dataclasses

    from deim.engine.config import TrainConfig

    plain = RunSpec("smoke")
    plain_key = plain.key()
    monkeypatch.setitem(PROTOCOLS, "smoke", dataclasses.replace(PROTOCOLS["smoke"], standard_ops=()))
    bare = RunSpec("smoke")
    cfg = bare.train_config()
    assert cfg.schedule.aug.standard_ops == ()
    assert bare.key() != plain_key
    assert TrainConfig.from_dict(cfg.to_dict()).resolved_schedule().aug.standard_ops == ()
    monkeypatch.setitem(PROTOCOLS, "smoke", dataclasses.replace(PROTOCOLS["smoke"], standard_ops=None))
    assert RunSpec("smoke").key() == plain_key

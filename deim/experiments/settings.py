"""The settings each reproduction notebook compares, as named lists of :class:`RunSpec` (one per seed),
and which notebook reads which of them: a notebook declares it by importing the groups it reads
from here (:func:`declared_groups`), so no list of notebooks is kept by hand.

Settings are shared on purpose: the VFL grid cell (0, 0) is the ablation's baseline, the
(0.5, 0.5) cell its "+ Dense O2O" row, and MAL with γ = 1.5 and Dense O2O is DEIM in every
notebook, so each of those runs is trained once.
"""
from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from pathlib import Path

from deim.experiments.protocol import PILOT_CANDIDATES, PILOT_SEEDS, get_protocol
from deim.experiments.runs import RunSpec

Settings = dict[str, list[RunSpec]]
SettingGroup = Callable[[str, str | None], Settings]  # (scale, COCO root at scale full) -> settings


def _seeds(scale: str, data_root: str | None = None, **fields) -> list[RunSpec]:
    return [RunSpec(scale=scale, seed=s, data_root=data_root, **fields) for s in get_protocol(scale).seeds]


def gamma_sweep(scale: str, data_root: str | None = None) -> dict[str, list[RunSpec]]:
    """Table 5: MAL with each γ of the protocol, Dense O2O on."""
    return {f"γ={g:g}": _seeds(scale, data_root, loss="mal", gamma=g) for g in get_protocol(scale).gammas}


def mosaic_mixup_grid(scale: str, data_root: str | None = None) -> dict[str, list[RunSpec]]:
    """Table 4: mosaic probability × mixup probability, the baseline loss (VFL)."""
    grid = get_protocol(scale).mix_grid
    return {f"mosaic {m:g}, mixup {x:g}": _seeds(scale, data_root, loss="vfl", gamma=2.0, mosaic_prob=m, mixup_prob=x)
            for m in grid for x in grid}


def dense_o2o_mal_ablation(scale: str, data_root: str | None = None) -> dict[str, list[RunSpec]]:
    """Table 6: the baseline at 1x and 2x epochs, + Dense O2O, + MAL, + both (DEIM), at 1x."""
    off = dict(mosaic_prob=0.0, mixup_prob=0.0)
    return {
        "baseline (VFL), 1x": _seeds(scale, data_root, loss="vfl", gamma=2.0, **off),
        "baseline (VFL), 2x": _seeds(scale, data_root, loss="vfl", gamma=2.0, epoch_factor=2, **off),
        "+ Dense O2O, 1x": _seeds(scale, data_root, loss="vfl", gamma=2.0),
        "+ MAL, 1x": _seeds(scale, data_root, loss="mal", gamma=1.5, **off),
        "DEIM (Dense O2O + MAL), 1x": _seeds(scale, data_root, loss="mal", gamma=1.5),
    }


def protocol_pilot(scale: str, data_root: str | None = None) -> dict[str, list[RunSpec]]:
    """The pilot of ``scale``'s protocol (notebook 12): each candidate's baseline (VFL, no Dense O2O)
    at its 2x budget, the pilot's seeds; keyed by candidate name. ``data_root`` is not used (the
    pilot runs on the built-in data); it is there so that every setting group is called alike."""
    return {name: [RunSpec(scale=p.scale, seed=s, loss="vfl", gamma=2.0, mosaic_prob=0.0, mixup_prob=0.0,
                           epoch_factor=2) for s in PILOT_SEEDS]
            for name, p in PILOT_CANDIDATES[scale].items()}


# The reproduction study: Tables 6, 5 and 4. Its groups share runs (see the module's docstring).
STUDY: tuple[SettingGroup, ...] = (dense_o2o_mal_ablation, gamma_sweep, mosaic_mixup_grid)

# Every setting group a notebook can read, by name: a notebook declares the runs it reads by
# importing their groups from this module (``from deim.experiments.settings import gamma_sweep``).
SETTING_GROUPS: dict[str, SettingGroup] = {g.__name__: g for g in (*STUDY, protocol_pilot)}


def declared_groups(source: str) -> tuple[SettingGroup, ...]:
    """The setting groups a notebook's source (jupytext ``.py``) imports from this module: the runs
    it reads, which ``deim reproduce --jobs`` trains before executing it."""
    names = [alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
             and node.module == __name__ for alias in node.names]
    return tuple(SETTING_GROUPS[name] for name in dict.fromkeys(names) if name in SETTING_GROUPS)


def unique_specs(groups: Iterable[Settings]) -> list[RunSpec]:
    """Every spec of the settings ``groups`` once (by run key), in first-seen order."""
    seen: dict[str, RunSpec] = {}
    for settings in groups:
        for specs in settings.values():
            for spec in specs:
                seen.setdefault(spec.key(), spec)
    return list(seen.values())


def reproduction_runs(scale: str, data_root: str | None = None) -> list[RunSpec]:
    """Every run of the reproduction study (:data:`STUDY`), each once."""
    return unique_specs([group(scale, data_root) for group in STUDY])


def notebook_runs(scale: str, notebooks: Iterable[str | Path], data_root: str | None = None) -> list[RunSpec]:
    """Every run the given notebooks (paths of their ``.py`` sources) read, each once (the groups
    they import, :func:`declared_groups`).
    A notebook reading part of the study brings the whole study (:func:`reproduction_runs`): its
    groups share runs, and training it in one go keeps every notebook of it complete."""
    groups = [group for path in notebooks for group in declared_groups(Path(path).read_text())]
    if set(groups) & set(STUDY):
        groups = [group for group in groups if group not in STUDY] + list(STUDY)
    return unique_specs([group(scale, data_root) for group in dict.fromkeys(groups)])

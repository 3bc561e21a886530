"""The settings each reproduction notebook compares, as named lists of :class:`RunSpec` (one per seed),
and which notebook reads which of them (:data:`NOTEBOOK_RUNS`, the one place that says so).

Settings are shared on purpose: the VFL grid cell (0, 0) is the ablation's baseline, the
(0.5, 0.5) cell its "+ Dense O2O" row, and MAL with γ = 1.5 and Dense O2O is DEIM in every
notebook, so each of those runs is trained once.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

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

# Which setting groups each notebook reads, by notebook number: the one list of the notebooks that
# read experiment runs (``deim reproduce`` trains them beforehand with ``--jobs``). A new notebook
# that reads runs adds its entry here; tests/test_experiments.py checks it against the notebooks.
NOTEBOOK_RUNS: dict[str, tuple[SettingGroup, ...]] = {
    "00": (dense_o2o_mal_ablation,),  # its DEIM run at seed 0, RunSpec(scale)
    "05": (dense_o2o_mal_ablation,),
    "06": (gamma_sweep,),
    "07": (mosaic_mixup_grid,),
    "08": (dense_o2o_mal_ablation,),
    "09": (dense_o2o_mal_ablation,),
    "11": (dense_o2o_mal_ablation,),
    "12": (protocol_pilot,),
    "13": (dense_o2o_mal_ablation,),
}


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


def notebook_runs(scale: str, notebooks: Collection[str], data_root: str | None = None) -> list[RunSpec]:
    """Every run the given notebooks (by number, ``"08"``) read, each once (:data:`NOTEBOOK_RUNS`).
    A notebook reading part of the study brings the whole study (:func:`reproduction_runs`): its
    groups share runs, and training it in one go keeps every notebook of it complete."""
    groups = [group for number, read in NOTEBOOK_RUNS.items() if number in notebooks for group in read]
    if set(groups) & set(STUDY):
        groups = [group for group in groups if group not in STUDY] + list(STUDY)
    return unique_specs([group(scale, data_root) for group in dict.fromkeys(groups)])

"""The settings each reproduction notebook compares, as named lists of :class:`RunSpec` (one per seed).

Settings are shared on purpose: the VFL grid cell (0, 0) is the ablation's baseline, the
(0.5, 0.5) cell its "+ Dense O2O" row, and MAL with γ = 1.5 and Dense O2O is DEIM in every
notebook, so each of those runs is trained once.
"""
from __future__ import annotations

from deim.experiments.protocol import get_protocol
from deim.experiments.runs import RunSpec


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


def reproduction_runs(scale: str, data_root: str | None = None) -> list[RunSpec]:
    """Every run the reproduction notebooks (00, 05-09, 11) ask for, each once."""
    from deim.experiments.parallel import unique_specs

    return unique_specs([dense_o2o_mal_ablation(scale, data_root), gamma_sweep(scale, data_root),
                         mosaic_mixup_grid(scale, data_root)])


def protocol_pilot(scale: str) -> dict[str, list[RunSpec]]:
    """The pilot of ``scale``'s protocol (notebook 12): each candidate's baseline (VFL, no Dense O2O)
    at its 2x budget, the pilot's seeds; keyed by candidate name."""
    from deim.experiments.protocol import PILOT_CANDIDATES, PILOT_SEEDS

    return {name: [RunSpec(scale=p.scale, seed=s, loss="vfl", gamma=2.0, mosaic_prob=0.0, mixup_prob=0.0,
                           epoch_factor=2) for s in PILOT_SEEDS]
            for name, p in PILOT_CANDIDATES[scale].items()}


def notebook_runs(scale: str, notebooks: list[str], data_root: str | None = None) -> list[RunSpec]:
    """Every run the given notebooks (by number, ``"08"``) read, each once: the study's runs for the
    reproduction notebooks, the pilot's for ``12``."""
    from deim.experiments.parallel import unique_specs

    groups: list[dict[str, list[RunSpec]]] = []
    if "12" in notebooks:
        groups.append(protocol_pilot(scale))
    if (set(notebooks) - {"12"}) & {"00", "05", "06", "07", "08", "09", "11", "13"}:
        groups += [dense_o2o_mal_ablation(scale, data_root), gamma_sweep(scale, data_root),
                   mosaic_mixup_grid(scale, data_root)]
    return unique_specs(groups)

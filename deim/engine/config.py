"""Typed configuration of a training run, printable as YAML and overridable with ``key=value``.

A run is a model preset (``deim_dfine_s`` ...) with overrides, a dataset, a training schedule
(the preset's paper schedule, optionally rescaled to another number of epochs or batch size) and
runtime settings. ``TrainConfig.from_preset`` fills everything from the paper;
``apply_overrides(cfg, ["data.num_workers=0", "schedule.lr=1e-4"])`` changes single values.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any

import yaml

from deim.data.aug_schedule import AugSchedule
from deim.engine.backbone_pretrain import BackbonePretrain
from deim.overrides import coerce_value, field_types, parse_value
from deim.presets.catalog import get_preset
from deim.presets.resolve import typed_override
from deim.presets.sections import plain
from deim.presets.training import TrainSchedule


@dataclass
class DataConfig:
    """Where the data comes from and how it is loaded.

    ``dataset``: ``coco`` (``root`` holds ``train2017/``, ``val2017/``, ``annotations/``),
    ``custom`` (any COCO-format folder: the four ``train_*``/``val_*`` paths) or ``fashion``
    (the built-in Fashion-MNIST detection data at ``fashion_scale``; ``fashion_canvas`` overrides
    keywords of that scale's canvas recipe, ``deim.data.fashion.FASHION_CANVAS``, e.g.
    ``{"clutter_per_image": (0, 0)}``).
    """

    dataset: str = "fashion"
    root: str | None = None
    train_images: str | None = None
    train_ann: str | None = None
    val_images: str | None = None
    val_ann: str | None = None
    fashion_scale: str = "reduced"
    fashion_canvas: dict[str, Any] = field(default_factory=dict)
    image_size: int = 640
    num_workers: int = 2
    mosaic_cache: bool = False
    val_batch_size: int = 8
    train_subset: int | None = None
    val_subset: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in ("coco", "custom", "fashion"):
            raise ValueError(f"data.dataset must be coco, custom or fashion, got {self.dataset!r}")
        _check_at_least(0, num_workers=self.num_workers)
        _check_at_least(1, image_size=self.image_size, val_batch_size=self.val_batch_size)


@dataclass
class TrainConfig:
    preset: str = "deim_dfine_s"
    model: dict[str, Any] = field(default_factory=dict)
    criterion: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: TrainSchedule | None = None
    device: str = "auto"
    amp: bool = False
    seed: int = 0
    output_dir: str = "outputs/train"
    eval_every: int = 1
    checkpoint_every: int = 1
    sync_bn: bool = False
    freeze_bn: bool = False
    max_nonfinite: int = 5
    resume: str | None = None
    finetune: str | None = None
    backbone_pretrain: BackbonePretrain | None = None
    backbone_weights: str | None = None  # pretrained backbone file (e.g. the official ImageNet weights)
    snapshot_epochs: tuple[int, ...] = ()  # epochs after which the EMA weights are kept (snapshots/ema_eNNN.pth)

    def __post_init__(self) -> None:
        _check_at_least(1, eval_every=self.eval_every, checkpoint_every=self.checkpoint_every,
                        max_nonfinite=self.max_nonfinite)
        self.snapshot_epochs = tuple(int(e) for e in self.snapshot_epochs)

    @classmethod
    def from_preset(cls, preset: str, epochs: int | None = None, batch_size: int | None = None,
                    **kwargs) -> "TrainConfig":
        """The paper's schedule for ``preset``, rescaled to ``epochs`` and ``batch_size`` when given."""
        return cls.from_schedule(preset, get_preset(preset).schedule, epochs, batch_size, **kwargs)

    @classmethod
    def from_schedule(cls, preset: str, schedule: TrainSchedule, epochs: int | None = None,
                      batch_size: int | None = None, **kwargs) -> "TrainConfig":
        """A run of ``preset`` on ``schedule`` (its paper one, already looked up), rescaled to
        ``epochs`` and ``batch_size`` when given."""
        if epochs is not None and epochs != schedule.epochs:
            schedule = rescale_epochs(schedule, epochs)
        if batch_size is not None and batch_size != schedule.total_batch_size:
            schedule = schedule.scaled_to_batch(batch_size)
        return cls(preset=preset, schedule=schedule, **kwargs)

    def resolved_schedule(self) -> TrainSchedule:
        return self.schedule if self.schedule is not None else get_preset(self.preset).schedule

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["schedule"] = self.resolved_schedule().to_dict()
        return plain(d)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["data"] = DataConfig(**d.get("data", {}))
        if d.get("backbone_pretrain") is not None:
            d["backbone_pretrain"] = BackbonePretrain(**d["backbone_pretrain"])
        if d.get("schedule") is not None:
            s = dict(d["schedule"])
            a = dict(s.pop("aug"))
            a["policy_epochs"] = tuple(a["policy_epochs"])
            a["mixup_epochs"] = tuple(a["mixup_epochs"])
            if "standard_ops" in a:
                a["standard_ops"] = tuple(a["standard_ops"])
            d["schedule"] = TrainSchedule(aug=AugSchedule(**a), **s)
        return cls(**d)


def rescale_epochs(s: TrainSchedule, epochs: int) -> TrainSchedule:
    """The same schedule *shape* over ``epochs``: every stage boundary scaled proportionally.

    The augmentation warm-up keeps at most its 4 epochs; stages never collapse below one epoch
    when the run is long enough. Used for short reduced-scale runs and for ``--epochs``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    k = epochs / s.epochs

    def sc(e: int) -> int:
        return min(epochs, max(0, round(e * k)))

    e0, e1, e2 = s.aug.policy_epochs
    n0, n1, n2 = sc(e0), sc(e1), sc(e2)
    if e0 > 0 and n0 == 0 and epochs >= 4:
        n0 = 1
    if e1 > e0 and n1 <= n0 and n2 > n0:
        n1 = n0 + 1
    n1 = max(n1, n0)
    n2 = max(n2, n1)
    m0, m1 = s.aug.mixup_epochs
    mix = (n0, n1) if (m0, m1) == (e0, e1) else (sc(m0), sc(m1))
    aug = replace(s.aug, policy_epochs=(n0, n1, n2), mixup_epochs=mix)
    flat = s.flat_epoch if s.flat_epoch > s.epochs else max(n0, sc(s.flat_epoch))
    return replace(s, epochs=epochs, aug=aug, flat_epoch=flat, no_aug_epoch=epochs - n2 if s.no_aug_epoch else 0)


def apply_overrides(cfg: TrainConfig, assignments: list[str]) -> TrainConfig:
    """Apply ``key=value`` overrides (dotted keys) to a copy of ``cfg``.

    Values are read as YAML and converted to the field's type (``schedule.lr=4e-4`` is a float;
    ``data.image_size=abc`` is refused). ``model.<key>`` and ``criterion.<key>`` take the model
    builder's keys, qualified or bare (``model.decoder.num_layers=2``, ``model.num_queries=100``),
    checked and typed against the preset. Other keys must exist: an unknown key raises
    ``ValueError`` listing the valid ones.
    """
    d = cfg.to_dict()
    for item in assignments:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key, value = key.strip(), parse_value(raw)
        parts = key.split(".")
        if parts[0] in ("model", "criterion") and len(parts) > 1:
            inner, typed = _model_override(d["preset"], parts[0], ".".join(parts[1:]), value)
            d[parts[0]][inner] = plain(typed)
            continue
        node, owner = d, TrainConfig
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ValueError(f"unknown config key {key!r}: {'.'.join(parts[:depth + 1])} is not a section")
            node, owner = node[part], _section_type(owner, part)
        if parts[-1] not in node:
            raise ValueError(f"unknown config key {key!r}; valid keys here: {', '.join(sorted(node))}")
        hint = field_types(owner).get(parts[-1]) if owner is not None else None
        node[parts[-1]] = plain(coerce_value(key, value, hint) if hint is not None else value)
    return TrainConfig.from_dict(d)


def _model_override(preset: str, section: str, key: str, value: Any) -> tuple[str, Any]:
    """``(builder key, typed value)`` of ``model.<key>`` or ``criterion.<key>``; under ``criterion``
    a key of the criterion itself may leave out its section (``criterion.gamma``)."""
    try:
        return key, typed_override(preset, key, value)
    except ValueError:
        if section != "criterion" or key.startswith("criterion."):
            raise
        try:
            return f"criterion.{key}", typed_override(preset, f"criterion.{key}", value)
        except ValueError:
            pass
        raise


def _section_type(owner: type | None, name: str) -> type | None:
    """The dataclass type of the section ``name`` of ``owner`` (``None`` when it is not one)."""
    if owner is None:
        return None
    hint = field_types(owner).get(name)
    candidates = typing.get_args(hint) or (hint,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def _check_at_least(minimum: int, **values: Any) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def config_fields() -> list[str]:
    """Top-level field names, for help texts."""
    return [f.name for f in fields(TrainConfig)]

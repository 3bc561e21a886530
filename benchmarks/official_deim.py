"""The official DEIM code, imported at run time from a checkout, for side-by-side benchmarks.

Nothing of the official code is copied here: ``OfficialDEIM(path)`` puts the checkout on
``sys.path`` and builds the model, criterion, postprocessor, optimizer and EMA from its YAML
configs exactly as its solver does (``YAMLConfig`` properties: ``cfg.model``, ``cfg.criterion``,
``cfg.optimizer`` over its regex parameter groups, ``cfg.ema`` created from the model), with our
model overrides translated to its config keys and the backbone's ``pretrained`` switched off so
that nothing is downloaded. Our model's state dict is loaded into the official model (the
parameter names are equal) *before* the EMA copy and the optimizer are made, so both
implementations start from identical weights.

Several configs can be built in one process: the shared default dict of the official
``load_config`` (a mutable default argument that accumulates every file loaded) is emptied first.

Import-time shims (benchmark only, the official code is not changed): ``torch.utils.tensorboard``
(needs the ``tensorboard`` package, only used for logging) and ``calflops`` (only used to print
FLOPs) are replaced by empty stand-in modules when they are not installed.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

CONFIGS = {
    "deim_dfine_n": "configs/deim_dfine/deim_hgnetv2_n_coco.yml",
    "deim_dfine_s": "configs/deim_dfine/deim_hgnetv2_s_coco.yml",
    "deim_rtdetrv2_r18": "configs/deim_rtdetrv2/deim_r18vd_120e_coco.yml",
}
SHIMMED: list[str] = []  # the modules replaced by stand-ins (reported by the benchmarks)


def _shim(name: str, **attributes: Any) -> None:
    try:
        __import__(name)
    except ImportError:
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
        SHIMMED.append(name)


def import_official(path: str | Path) -> types.ModuleType:
    """The official ``engine`` package of the checkout at ``path`` (shims installed first)."""
    path = Path(path).resolve()
    if not (path / "engine" / "core" / "yaml_config.py").is_file():
        raise FileNotFoundError(f"{path} is not a checkout of the official DEIM code (no engine/core/yaml_config.py)")
    _shim("torch.utils.tensorboard", SummaryWriter=object)
    _shim("calflops", calculate_flops=None)
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    import engine  # noqa: PLC0415 (the official package, importable only now)

    if not str(Path(engine.__file__).resolve()).startswith(str(path)):
        raise ImportError(f"'engine' was imported from {engine.__file__}, not from {path}")
    return engine


def official_overrides(decoder: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Our ``build_model`` overrides as an official config dict (merged into the YAML).

    Supported keys: ``num_classes``, ``eval_spatial_size`` (int or ``(h, w)``), ``num_queries``,
    ``num_denoising``, ``decoder.num_layers``; any other key is refused.
    """
    names = {"num_queries": "num_queries", "num_denoising": "num_denoising", "decoder.num_layers": "num_layers",
             "decoder.num_queries": "num_queries", "decoder.num_denoising": "num_denoising"}
    cfg: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "num_classes":
            cfg["num_classes"] = int(value)
        elif key == "eval_spatial_size":
            cfg["eval_spatial_size"] = [value, value] if isinstance(value, int) else list(value)
        elif key in names:
            cfg.setdefault(decoder, {})[names[key]] = int(value)
        else:
            raise ValueError(f"no official config key known for override {key!r}")
    return cfg


class OfficialDEIM:
    """Model, criterion, postprocessor, optimizer and EMA of one official config (see the module docstring).

    Args:
        path: the official checkout.
        preset: one of :data:`CONFIGS` (our preset names).
        overrides: our ``build_model`` overrides (see :func:`official_overrides`).
        state_dict: our model's state dict, loaded strictly into the official model.
    """

    def __init__(self, path: str | Path, preset: str, overrides: dict[str, Any],
                 state_dict: dict[str, torch.Tensor]) -> None:
        engine = import_official(path)
        from engine.core import YAMLConfig  # noqa: PLC0415
        from engine.core.yaml_utils import load_config, merge_dict  # noqa: PLC0415

        if preset not in CONFIGS:
            raise ValueError(f"no official config mapped for {preset!r}; known: {sorted(CONFIGS)}")
        # its load_config(path, cfg=dict()) merges every file into one shared default dict: cleared so
        # that a second preset built in the same process does not inherit the first one's keys
        load_config.__defaults__[0].clear()
        self.engine = engine
        self.cfg = YAMLConfig(str(Path(path).resolve() / CONFIGS[preset]))
        yaml_cfg = self.cfg.yaml_cfg
        backbone, decoder = yaml_cfg["DEIM"]["backbone"], yaml_cfg["DEIM"]["decoder"]
        merge_dict(yaml_cfg, {backbone: {"pretrained": False}, **official_overrides(decoder, overrides)})
        self.model: nn.Module = self.cfg.model
        self.model.load_state_dict(state_dict, strict=True)

    @property
    def criterion(self) -> nn.Module:
        return self.cfg.criterion

    @property
    def postprocessor(self) -> nn.Module:
        return self.cfg.postprocessor

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """AdamW over the config's regex groups (torch's default per-tensor loop on CPU)."""
        return self.cfg.optimizer

    @property
    def ema(self) -> Any:
        """The official ``ModelEMA`` (made from the model as it is when first asked for)."""
        return self.cfg.ema

    @property
    def clip_max_norm(self) -> float:
        return float(self.cfg.yaml_cfg.get("clip_max_norm", 0.0))

"""The officially released DEIM models, by name: which preset, how many classes, where to get them.

Every model the official DEIM README (github.com/ShihuaHuang95/DEIM, "Model Zoo" and the
2025-03-12 update) releases, with the Google Drive links given there::

    deim_dfine_{n,s,m,l,x}_coco            DEIM-D-FINE N-X, COCO (80 classes)
    deim_rtdetrv2_{r18,r34,r50m,r50,r101}_coco   DEIM-RT-DETRv2 R18-R101, COCO
    deim_dfine_x_obj365                    DEIM-D-FINE-X trained on Objects365 (366 classes)

``deim.weights.resolve_weights(name)`` downloads one into the cache; ``deim.from_pretrained(name)``
and ``deim.Detector.from_pretrained(name)`` build the model around it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PretrainedModel:
    """One released checkpoint.

    ``url``: where it is downloaded from (a Google Drive link needs ``pip install 'deim[weights]'``);
    ``sha256``: checked after a download and on a cache hit when known (``None``: not published);
    ``model``: model overrides on top of ``preset`` (``section.field`` keys, as ``build_model`` takes);
    ``ap``: COCO val2017 AP (%) of the official README, for listings only.
    """

    name: str
    preset: str
    url: str
    num_classes: int = 80
    sha256: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    ap: float | None = None
    dataset: str = "COCO"


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/uc?id={file_id}"


def _entries() -> dict[str, PretrainedModel]:
    coco = [
        ("deim_dfine_n_coco", "deim_dfine_n", "1ZPEhiU9nhW4M5jLnYOFwTSLQC1Ugf62e", 43.0),
        ("deim_dfine_s_coco", "deim_dfine_s", "1tB8gVJNrfb6dhFvoHJECKOF5VpkthhfC", 49.0),
        ("deim_dfine_m_coco", "deim_dfine_m", "18Lj2a6UN6k_n_UzqnJyiaiLGpDzQQit8", 52.7),
        ("deim_dfine_l_coco", "deim_dfine_l", "1PIRf02XkrA2xAD3wEiKE2FaamZgSGTAr", 54.7),
        ("deim_dfine_x_coco", "deim_dfine_x", "1dPtbgtGgq1Oa7k_LgH1GXPelg1IVeu0j", 56.5),
        ("deim_rtdetrv2_r18_coco", "deim_rtdetrv2_r18", "153_JKff6EpFgiLKaqkJsoDcLal_0ux_F", 49.0),
        ("deim_rtdetrv2_r34_coco", "deim_rtdetrv2_r34", "1O9RjZF6kdFWGv1Etn1Toml4r-YfdMDMM", 50.9),
        ("deim_rtdetrv2_r50m_coco", "deim_rtdetrv2_r50m", "10dLuqdBZ6H5ip9BbBiE6S7ZcmHkRbD0E", 53.2),
        ("deim_rtdetrv2_r50_coco", "deim_rtdetrv2_r50", "1mWknAXD5JYknUQ94WCEvPfXz13jcNOTI", 54.3),
        ("deim_rtdetrv2_r101_coco", "deim_rtdetrv2_r101", "1BIevZijOcBO17llTyDX32F_pYppBfnzu", 55.5),
    ]
    models = [PretrainedModel(name, preset, _drive(file_id), ap=ap) for name, preset, file_id, ap in coco]
    # Objects365 (365 categories + background id 0 in the official dataset config: num_classes 366);
    # ReLU decoder activations as in the official Objects365 -> COCO fine-tuning config that starts from it.
    models.append(PretrainedModel("deim_dfine_x_obj365", "deim_dfine_x", _drive("1RMNrHh3bYN0FfT5ZlWhXtQxkG23xb2xj"),
                                  num_classes=366, dataset="Objects365",
                                  model={"decoder.activation": "relu", "decoder.mlp_act": "relu"}))
    return {m.name: m for m in models}


PRETRAINED: dict[str, PretrainedModel] = _entries()


def list_pretrained() -> list[str]:
    """Names accepted by ``from_pretrained`` and ``--weights``."""
    return list(PRETRAINED)


def find_pretrained(name: str) -> PretrainedModel | None:
    """The released model called ``name``, or ``None`` when ``name`` is not one (e.g. a path)."""
    return PRETRAINED.get(name)

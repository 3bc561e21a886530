"""Model size and compute: parameter counts and GFLOPs of one inference.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``: matrix multiplications and
convolutions, two FLOPs per multiply-accumulate. Element-wise operations, normalisation,
``grid_sample`` and ``topk`` are not counted; they are a few percent of a detector's total.
The official numbers (calflops, deploy model, batch 1, 640x640) count the same way for the
dominant layers.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements; a parameter registered twice is counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, image_size: int | tuple[int, int] = 640, batch_size: int = 1,
                deploy: bool = True) -> int:
    """FLOPs of one eval forward on ``[batch_size, 3, H, W]``.

    With ``deploy`` (the default) a copy of the model is converted with ``model.deploy()`` first,
    as the official measurements do; ``model`` itself is never modified.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    model = copy.deepcopy(model)
    if deploy and hasattr(model, "deploy"):
        model.deploy()
    model.eval()
    device = next(model.parameters()).device
    images = torch.rand(batch_size, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(images)
    return counter.get_total_flops()


def count_gflops(model: nn.Module, image_size: int | tuple[int, int] = 640, batch_size: int = 1,
                 deploy: bool = True) -> float:
    """:func:`count_flops` in units of 1e9."""
    return count_flops(model, image_size, batch_size, deploy) / 1e9


def model_summary(model: nn.Module, image_size: int | tuple[int, int] = 640) -> dict[str, float]:
    """``{"params_m", "deploy_params_m", "gflops"}`` of a model (millions, 1e9)."""
    deployed = copy.deepcopy(model)
    if hasattr(deployed, "deploy"):
        deployed.deploy()
    return {"params_m": count_parameters(model) / 1e6,
            "deploy_params_m": count_parameters(deployed) / 1e6,
            "gflops": count_gflops(deployed, image_size, deploy=False)}

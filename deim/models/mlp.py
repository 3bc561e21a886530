"""Activations by name and the feed-forward ``MLP`` head shared by both decoders and the encoder."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "hardsigmoid": nn.Hardsigmoid,
}


def get_activation(name: str | nn.Module | None, inplace: bool = True) -> nn.Module:
    """The activation module called ``name`` (``None`` gives ``nn.Identity``; a module passes through).

    ``inplace`` is applied where the module supports it (ReLU, SiLU, LeakyReLU, Hardsigmoid).
    """
    if name is None:
        return nn.Identity()
    if isinstance(name, nn.Module):
        return name
    factory = _ACTIVATIONS.get(name.lower())
    if factory is None:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)} or None")
    module = factory()
    if hasattr(module, "inplace"):
        module.inplace = inplace
    return module


class MLP(nn.Module):
    """``num_layers`` linear layers with ``act`` between them (none after the last).

    ``[..., input_dim] -> [..., output_dim]``; hidden layers have width ``hidden_dim``.
    Parameter names ``layers.{i}.weight|bias`` follow the official checkpoints.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int,
                 act: str | None = "relu") -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP needs at least one layer, got num_layers={num_layers}")
        self.num_layers = num_layers
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.num_layers - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return x

"""The DEIM detector: backbone -> hybrid encoder -> DETR decoder.

The submodules are registered in the official order (``backbone``, ``decoder``, ``encoder``) so
that ``state_dict()`` lists keys exactly like the released checkpoints.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

# The encoder's FPN/PAN upsamples stride-32 features back to stride 8; sizes that are not a
# multiple of the largest stride would not line up.
_SIZE_MULTIPLE = 32


class DEIM(nn.Module):
    """A DETR-style detector (DEIM-D-FINE, DEIM-RT-DETRv2 and their baselines).

    Args:
        backbone: ``images [B, 3, H, W] -> list of [B, C_l, H/s_l, W/s_l]``.
        encoder: multi-scale features -> features of ``hidden_dim`` channels per level.
        decoder: features (and targets, for denoising in training) -> output dict.
    """

    def __init__(self, backbone: nn.Module, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.encoder = encoder
        self._channels_last = False

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None) -> dict:
        """
        Args:
            images: ``[B, 3, H, W]`` floats in ``[0, 1]`` (no mean/std normalisation), ``H`` and
                ``W`` multiples of 32; any such size works in eval mode.
            targets: training only (denoising queries): per image ``{"labels": [n] int64,
                "boxes": [n, 4] cxcywh normalised}``.

        Returns:
            eval: ``{"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4]}`` (cxcywh normalised);
            train: additionally the auxiliary, encoder, pre and denoising outputs the criterion needs.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {list(images.shape)}")
        height, width = images.shape[-2:]
        if height % _SIZE_MULTIPLE or width % _SIZE_MULTIPLE:
            raise ValueError(f"image height and width must be multiples of {_SIZE_MULTIPLE}, got {height}x{width}")
        if self._channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(images)
        feats = self.encoder(feats)
        return self.decoder(feats, targets)

    def channels_last(self) -> "DEIM":
        """Keep convolution weights, and convert inputs, in the channels-last (NHWC) layout: oneDNN's
        faster one on the CPU (the evaluation forward at 96 px about 0.7x the time; benchmarks/README.md).
        Only the layout changes, not the arithmetic: outputs differ from NCHW at float rounding. For
        inference: training stays NCHW, where the losses equal the official code's to 1e-4 (in NHWC
        ``loss_fgl`` of the N preset moves by 1.3e-4). In place."""
        self.to(memory_format=torch.channels_last)
        self._channels_last = True
        return self

    def deploy(self) -> "DEIM":
        """Switch to eval mode and apply every submodule's ``convert_to_deploy`` (fused
        re-parameterised convolutions, decoder layers beyond ``eval_idx`` dropped). In place;
        afterwards the model is for inference only."""
        self.eval()
        for module in list(self.modules()):
            convert = getattr(module, "convert_to_deploy", None)
            if callable(convert):
                convert()
        return self


def for_cpu_inference(model: nn.Module) -> nn.Module:
    """``model`` itself, or, for a :class:`DEIM` on the CPU that is not channels-last yet, a
    channels-last copy of it (:meth:`DEIM.channels_last`), e.g. of the EMA model for one evaluation."""
    if not isinstance(model, DEIM) or model._channels_last:
        return model
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu":
        return model
    return copy.deepcopy(model).channels_last()

"""Counting multiply-accumulates (MACs) of a ViT as it runs, reduction included.

The count comes from one real forward pass of one image, so it follows whatever token schedule the applied
method produces. It counts the matrix products, as the EViT and ToMe papers do: every nn.Linear and nn.Conv2d,
plus attention's two N x N products (q k^T and attn v). Norms, activations, softmax, the class-attention side
computation (N * C per reduction block) and the gathers of a reduction are left out; together they are well
under 1 % of a DeiT-S.
"""
from __future__ import annotations

import torch
from timm.layers import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from retokviz.patch import UnsupportedModelError, input_channels, model_name


def count_macs(model: nn.Module, image_size: int | tuple[int, int] | None = None) -> int:
    """MACs of one image through `model` as it is now (with or without a method applied).

    Args:
        model: a timm ViT.
        image_size: (height, width) or a side length; None means the model's configured size.

    Returns:
        the number of multiply-accumulates for one image.

    Raises:
        UnsupportedModelError: `model` is not a timm VisionTransformer (before anything runs).
        ValueError: a bad image size.
    """
    if not isinstance(model, VisionTransformer):
        raise UnsupportedModelError(
            f"count_macs counts timm VisionTransformer models (DeiT, ViT, DeiT-III, DINOv2, CLIP ViTs), with or "
            f"without a method applied; {model_name(model)} is not one"
        )
    if image_size is None:
        image_size = getattr(model.patch_embed, "img_size", None)
        if image_size is None:
            raise ValueError(f"{type(model).__name__} has no fixed image size; pass image_size=(height, width)")
    image_size = _check_size(image_size)
    parameter = next(model.parameters())
    image = torch.randn(1, input_channels(model), *image_size,
                        generator=torch.Generator().manual_seed(0)).to(parameter.device, parameter.dtype)
    total = 0

    def linear(module: nn.Linear, args: tuple, out: Tensor) -> None:
        nonlocal total
        total += out.numel() * module.in_features

    def conv(module: nn.Conv2d, args: tuple, out: Tensor) -> None:
        nonlocal total
        kernel_h, kernel_w = module.kernel_size
        total += out.numel() * module.in_channels // module.groups * kernel_h * kernel_w

    def attention(module: Attention, args: tuple, out: Tensor) -> None:
        nonlocal total
        batch, tokens, _ = args[0].shape
        total += 2 * batch * tokens * tokens * module.attn_dim

    counters = {nn.Linear: linear, nn.Conv2d: conv, Attention: attention}
    handles = [
        module.register_forward_hook(counters[kind])
        for module in model.modules()
        for kind in counters
        if isinstance(module, kind)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(image)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def _check_size(image_size: object) -> tuple[int, int]:
    """An image size (a side, or (height, width)) as a (height, width) pair of positive ints; ValueError if not."""
    sides = (image_size, image_size) if isinstance(image_size, int) and not isinstance(image_size, bool) else image_size
    valid = (isinstance(sides, (tuple, list)) and len(sides) == 2
             and all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in sides))
    if not valid:
        raise ValueError(f"image_size must be a positive int or (height, width) of positive ints, got {image_size!r}")
    return int(sides[0]), int(sides[1])

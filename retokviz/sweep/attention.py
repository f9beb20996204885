"""Which attention kernel a model actually runs, and switching timm's fused attention off for a while.

    with fused_attention(model, False):          # every timm Attention computes softmax(q k^T) v itself
        ...
    attention_kernel(model, images)              # "sdpa:flash", "sdpa:flash+efficient", "explicit softmax", ...

The kernel is read off one real forward pass: each call of F.scaled_dot_product_attention is caught and asked
which backend PyTorch picks for its very arguments (flash, efficient, cudnn, math), so a configuration whose
attention carries a mask (ToMe's proportional attention) shows the kernel that mask leads to. A pass with no call
of it ran the explicit product (timm's `fused_attn=False`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# torch.nn.attention.SDPBackend's values, as written in the table
_BACKENDS = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}
EXPLICIT = "explicit softmax"


@contextmanager
def fused_attention(model: nn.Module, enabled: bool) -> Iterator[nn.Module]:
    """Inside the block, every module of `model` with timm's `fused_attn` switch has it set to `enabled`; each
    gets its own setting back after, also when the block raises."""
    modules = [module for module in model.modules() if isinstance(getattr(module, "fused_attn", None), bool)]
    before = [module.fused_attn for module in modules]
    for module in modules:
        module.fused_attn = enabled
    try:
        yield model
    finally:
        for module, setting in zip(modules, before):
            module.fused_attn = setting


def _backend(args: tuple, kwargs: dict) -> str:
    """The SDPA backend PyTorch picks for these arguments, or "?" where this PyTorch can't say."""
    try:
        return _BACKENDS.get(int(torch._fused_sdp_choice(*args, **kwargs)), "?")
    except (AttributeError, RuntimeError, TypeError):
        return "?"


def attention_kernel(forward, inputs: torch.Tensor) -> str:
    """The attention kernels one pass of `forward(inputs)` runs, in order of first use: "sdpa:flash",
    "sdpa:flash+efficient" (blocks differ), or "explicit softmax" (no scaled_dot_product_attention call)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[str] = []

    class Catch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten.scaled_dot_product_attention.default:
                seen.append(_backend(args, kwargs))
            return func(*args, **kwargs)

    with torch.inference_mode(), Catch():
        forward(inputs)
    if not seen:
        return EXPLICIT
    return "sdpa:" + "+".join(dict.fromkeys(seen))

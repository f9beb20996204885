"""Small tensor helpers of the reduction steps, which keep a forward pass from launching kernels it doesn't need:
index tensors made once and reused (`cached`, `positions`), and casts skipped where the dtype already fits
(`as_float`, `as_dtype`: `t.float()` on a float32 tensor returns it, but still costs a call).

A reduction step needs the same few index tensors at every call (0, 1, ..., T - 1; which positions of a bipartite
split are A and which B). Building them anew costs a kernel launch each, which at batch 1 on a small model is a
good part of the step's cost; here they are made once per length and device. The cached tensors are shared: never
write into one (use them as indices, sources and operands only).

Under `torch.compile` nothing is cached: the compiler builds them into its graph.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable

import torch
from torch import Tensor

_CACHE: dict[Hashable, Tensor] = {}
_MAX_ENTRIES = 4096        # a bound (many image sizes, devices); the cache is emptied when it is reached


def cached(key: Hashable, make: Callable[[], Tensor]) -> Tensor:
    """The tensor `make()` made the first time `key` was asked for (`key` must name the device). Read-only.

    Made outside inference mode and without gradients, so that it serves every kind of pass (a gather in a pass
    that records gradients saves its index, which may not be an inference tensor).
    """
    if torch.compiler.is_compiling():
        return make()
    tensor = _CACHE.get(key)
    if tensor is None:
        if len(_CACHE) >= _MAX_ENTRIES:
            _CACHE.clear()
        with torch.inference_mode(False), torch.no_grad():
            tensor = make()
        _CACHE[key] = tensor
    return tensor


def positions(length: int, device: torch.device) -> Tensor:
    """[length] LongTensor 0, 1, ..., length - 1 on `device`. Read-only."""
    return cached(("positions", length, device), lambda: torch.arange(length, device=device))


def ones(batch: int, length: int, device: torch.device) -> Tensor:
    """[batch, length] float32 ones on `device` (the sizes of tokens that stand for one patch each): a cached row,
    expanded. Read-only."""
    return cached(("ones", length, device), lambda: torch.ones(length, device=device)).expand(batch, -1)


def as_float(tensor: Tensor) -> Tensor:
    """`tensor` as float32, without a call where it is float32 already."""
    return tensor if tensor.dtype == torch.float32 else tensor.float()


def as_dtype(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """`tensor` in `dtype`, without a call where it is in `dtype` already."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)

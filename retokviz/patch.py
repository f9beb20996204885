"""Patching timm VisionTransformer models so that a reduction method runs inside their blocks.

`apply` swaps the class of every block to `ReducingBlock`, a subclass of timm's `Block` that adds one step
between the attention residual and the MLP:

    x = x + drop_path1(ls1(attn(norm1(x))))      # timm's own modules: fused attention, q/k norm, LayerScale
    x = method.reduce(x, ...)                    # only at the method's reduction blocks
    x = x + drop_path2(ls2(mlp(norm2(x))))

A block with nothing to do (not a reduction block, or nothing to reduce at this keep rate, and no recording)
runs timm's own `Block.forward`, untouched. At a reduction block the class token's attention row is computed on
the side from the query and keys that timm's attention produces (forward hooks on `q_norm` and `k_norm`), so the
fused attention kernel stays on. `remove` restores the classes and removes the hooks.
"""
from __future__ import annotations

from typing import Any

from timm.layers import Attention
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn

from retokviz.methods.base import Method
from retokviz.scoring import AttentionView


class UnsupportedModelError(TypeError):
    """The model is not one retokviz can patch (raised before anything is changed)."""


class Patch:
    """The per-model state of a patched model, shared by its blocks (kept as `model._retokviz`).

    Attributes:
        method: the reduction method in force.
        reduce_at: the block indices where it reduces.
        num_prefix: the model's prefix tokens (class token, registers), never reduced.
        recorder: the provenance recorder while `rv.record` is active, else None.
    """

    def __init__(self, model_name: str, method: Method, reduce_at: frozenset[int], num_prefix: int) -> None:
        self.model_name = model_name
        self.method = method
        self.reduce_at = reduce_at
        self.num_prefix = num_prefix
        self.recorder: Any = None


class ReducingBlock(Block):
    """A timm `Block` that can reduce its tokens between attention and MLP. Made only by `apply`."""

    _retokviz: Patch
    _retokviz_index: int
    _retokviz_qk: dict[str, Tensor] | None

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """x: [B, N, C] -> [B, N', C], N' <= N."""
        patch = self._retokviz
        recorder = patch.recorder
        if recorder is not None and self._retokviz_index == 0:
            recorder.begin(x, patch.method, patch.num_prefix)
        at_reduction = self._retokviz_index in patch.reduce_at
        reduces = at_reduction and patch.method.reduces(x.shape[1] - patch.num_prefix)
        if not (reduces or (at_reduction and recorder is not None)):
            x = super().forward(x, *args, **kwargs)
            if recorder is not None:
                recorder.add(None, None)
            return x
        if args or kwargs.get("attn_mask") is not None or kwargs.get("is_causal"):
            raise ValueError(
                f"{patch.model_name}: block {self._retokviz_index} reduces tokens, which an attention mask or "
                "causal attention can't follow; call the model without attn_mask / is_causal"
            )

        self._retokviz_qk = {}
        try:
            attended = self.attn(self.norm1(x))
            qk = self._retokviz_qk
        finally:
            self._retokviz_qk = None
        x = x + self.drop_path1(self.ls1(attended))
        view = AttentionView(qk["q_cls"], qk["k"], self.attn.scale, patch.num_prefix)
        step = None
        if reduces:
            x, step = patch.method.reduce(x, view, track=recorder is not None)
        if recorder is not None:
            recorder.add(view.class_scores(), step)
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def _retokviz_capture_q(self, module: nn.Module, args: tuple, q: Tensor) -> None:
        """Forward hook on attn.q_norm: keep the class token's query row, q: [B, H, N, d]."""
        if self._retokviz_qk is not None:
            self._retokviz_qk["q_cls"] = q[:, :, 0]

    def _retokviz_capture_k(self, module: nn.Module, args: tuple, k: Tensor) -> None:
        """Forward hook on attn.k_norm: keep the keys, k: [B, H, N, d]."""
        if self._retokviz_qk is not None:
            self._retokviz_qk["k"] = k


_HOOKS = ("q_norm", ReducingBlock._retokviz_capture_q), ("k_norm", ReducingBlock._retokviz_capture_k)
_BLOCK_ATTRIBUTES = ("_retokviz", "_retokviz_index", "_retokviz_qk")


def model_name(model: nn.Module) -> str:
    """A model's timm name where timm recorded one, else its class name."""
    config = getattr(model, "pretrained_cfg", None) or {}
    architecture = config.get("architecture")
    return f"{architecture} ({type(model).__name__})" if architecture else type(model).__name__


def check_model(model: nn.Module, method: Method) -> tuple[int, ...]:
    """Check that `method` can be applied to `model`; return its reduction blocks.

    Raises:
        UnsupportedModelError: the model is not a supported timm ViT, or lacks what the method needs.
        ValueError: the method's layers lie outside the model's blocks.
    """
    name = model_name(model)
    if not isinstance(method, Method):
        raise TypeError(f"rv.apply needs a method such as rv.EViT(keep_rate=0.7), got {method!r}")
    if isinstance(model, VisionTransformerDistilled) or getattr(model, "dist_token", None) is not None:
        raise UnsupportedModelError(
            f"{name}: distilled DeiT has a distillation token and a second head, which retokviz does not handle; "
            "use the plain DeiT (e.g. deit_small_patch16_224)"
        )
    if not isinstance(model, VisionTransformer):
        raise UnsupportedModelError(
            f"{name}: retokviz patches timm VisionTransformer models (DeiT, ViT, DeiT-III, DINOv2, CLIP ViTs); "
            f"a {type(model).__name__} is not one, it has no sequence of transformer blocks over patch tokens"
        )
    for index, block in enumerate(model.blocks):
        attention = type(getattr(block, "attn", None))
        if type(block) not in (Block, ReducingBlock) or attention is not Attention:
            raise UnsupportedModelError(
                f"{name}: block {index} is a {type(block).__name__} (attention: {attention.__name__}); retokviz "
                "patches timm's pre-norm Block with its standard Attention"
            )
    if method.needs_class_token and model.cls_token is None:
        raise UnsupportedModelError(
            f"{name}: {type(method).__name__} ranks patches by the class token's attention, and this model has no "
            f"class token (class_token=False, global_pool={model.global_pool!r})"
        )
    return method.reduction_layers(len(model.blocks))


def apply(model: nn.Module, method: Method) -> nn.Module:
    """Make `model` run `method`, in place; applying again replaces the method (cheap: nothing is rebuilt).

    Args:
        model: a timm VisionTransformer.
        method: a reduction method, e.g. rv.EViT(keep_rate=0.7).

    Returns:
        the same model.

    Raises:
        UnsupportedModelError, ValueError: before anything is changed, if the model or method doesn't fit.
    """
    layers = check_model(model, method)
    patch = getattr(model, "_retokviz", None)
    if patch is not None:
        patch.method, patch.reduce_at = method, frozenset(layers)
        return model
    patch = Patch(model_name(model), method, frozenset(layers), model.num_prefix_tokens)
    for index, block in enumerate(model.blocks):
        block.__class__ = ReducingBlock
        block._retokviz, block._retokviz_index, block._retokviz_qk = patch, index, None
        for norm, hook in _HOOKS:
            getattr(block.attn, norm).register_forward_hook(hook.__get__(block))
    model._retokviz = patch
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo `apply`: the model's blocks, hooks and attributes are timm's again. A no-op on an unpatched model."""
    if getattr(model, "_retokviz", None) is None:
        return model
    for block in model.blocks:
        for norm, hook in _HOOKS:
            hooks = getattr(block.attn, norm)._forward_hooks
            for key in [key for key, fn in hooks.items() if getattr(fn, "__func__", None) is hook]:
                del hooks[key]
        for attribute in _BLOCK_ATTRIBUTES:
            block.__dict__.pop(attribute, None)
        block.__class__ = Block
    del model._retokviz
    return model


def patch_of(model: nn.Module) -> Patch:
    """The retokviz state of a patched model.

    Raises:
        RuntimeError: no method was applied to the model.
    """
    patch = getattr(model, "_retokviz", None)
    if patch is None:
        raise RuntimeError(
            f"{model_name(model)} has no retokviz method applied; call rv.apply(model, rv.EViT(...)) first "
            "(EViT(keep_rate=1.0) records class attention without reducing anything)"
        )
    return patch


def method_of(model: nn.Module) -> Method | None:
    """The method applied to `model`, or None."""
    patch = getattr(model, "_retokviz", None)
    return None if patch is None else patch.method

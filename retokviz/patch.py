"""Patching timm VisionTransformer models so that a reduction method runs inside their blocks.

`apply` swaps the class of every block to `ReducingBlock`, a subclass of timm's `Block` that adds one step
between the attention residual and the MLP:

    x = x + drop_path1(ls1(attn(norm1(x))))      # timm's own modules: fused attention, q/k norm, LayerScale
    x = method.reduce(x, ...)                    # only at the method's reduction blocks
    x = x + drop_path2(ls2(mlp(norm2(x))))

A block with nothing to do (not a reduction block, or nothing to reduce at this keep rate, and no recording)
runs timm's own `Block.forward`, untouched. At a reduction block the class token's attention row is computed on
the side from the query and keys that timm's attention produces (forward hooks on `q_norm` and `k_norm`, only on
the blocks where the method may reduce), so the fused attention kernel stays on. `remove` restores the classes and
removes the hooks.

The forward pass never waits for the device (no `.item()`, no shape that depends on values): how many tokens each
block leaves is arithmetic on the shapes, so a patched model runs under `torch.compile` without graph breaks (see
tests/test_compile.py).

A method that owns modules (`Method.owns_modules`: DynamicViT's predictors) has them registered on the model as
`model.retokviz_modules` (so they are in its parameters, state_dict and checkpoints), reduces at the input of its
blocks, before attention, and in training carries a keep policy into every later attention instead of dropping
tokens (`retokviz.ops.policy`). `remove` takes the modules out again.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from copy import deepcopy
from functools import partial
from typing import Any

from timm.layers import Attention
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import Block, VisionTransformer
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from retokviz.methods.base import InputView, Method, Regroup, count_after
from retokviz.methods.compose import as_tuple, compose, schedule, token_counts
from retokviz.ops.class_attention import AttentionView
from retokviz.ops.policy import policy_attention
from retokviz.ops.tensors import as_dtype


# Fewer patch tokens than this leave nothing to choose between: the image is too small for token reduction.
MIN_PATCHES = 2
# Where the modules of a method that owns some live on the model (a registered submodule).
MODULES = "retokviz_modules"


class UnsupportedModelError(TypeError):
    """The model is not one retokviz can patch (raised before anything is changed)."""


class ReductionState:
    """The per-model state of a patched model, shared by its blocks (kept as `model._retokviz`).

    Attributes:
        method: the reduction method in force, or a tuple of methods composed.
        schedule: for each block where something reduces, the methods that reduce there, in order.
        num_prefix: the model's prefix tokens (class token, registers), never reduced.
        depth: the number of blocks.
        has_class_token: whether the model has a class token (whose attention row is the importance score).
        recorder: the provenance recorder while `rv.record` is active, else None.
        sizes: [B, N] float32 during a forward pass, the number of patches each token stands for, once a merging
            method has merged tokens (None until then; reset at every forward pass).
        log_sizes: [B, N] float32, sizes.log(), computed once per change of `sizes` and shared by the blocks after
            it (their attention's proportional bias, the class attention of a reducing block); None with `sizes`.
        learned: whether the method owns modules (it runs alone, at its blocks' inputs).
        proportional: whether attention is proportional once tokens have merged (log(size) added to the logits
            towards each key); False where a method asks not to (`ToMe(proportional=False)`).
        policy: [B, N] during a training pass of a learned method, the keep policy (1 kept, 0 dropped) that
            attention follows, from its first reduction block on (None before it; reset at every pass).
        decisions: block index -> the keep decisions [B, P] of that reduction block in the last training pass of
            a learned method (what DynamicViT's loss reads and empties; emptied at every pass).
    """

    # class defaults: also for patched models pickled before these existed
    learned = False
    proportional = True
    policy: Tensor | None = None
    log_sizes: Tensor | None = None
    block_hooks: dict[int, tuple[RemovableHandle, ...]] | None = None   # None: patched before hooks followed the
    #   schedule (every block has its q/k hooks, their handles in `handles`)
    start = 0       # the patch tokens the pass under way started with
    count = 0       # the patch tokens present at the block under way (in training: as if dropped)

    def __init__(
        self,
        model_name: str,
        method: Method | tuple[Method, ...],
        plan: dict[int, tuple[Method, ...]],
        num_prefix: int,
        depth: int,
        has_cls: bool,
    ) -> None:
        self.model_name = model_name
        self.method = method
        self.schedule = plan
        self.num_prefix = num_prefix
        self.depth = depth
        self.has_class_token = has_cls
        self.recorder: Any = None
        self.sizes: Tensor | None = None
        self.image_size: tuple[int, int] | None = None
        self.handles: list[RemovableHandle] = []   # the model's hooks that `apply` added (the image checks)
        # block -> the handles of its q/k hooks, on the blocks where something may reduce (see `_hook_blocks`)
        self.block_hooks: dict[int, tuple[RemovableHandle, ...]] = {}
        self.input_size: tuple[int, int] | None = None   # (H, W) of the images of the pass under way
        self.learned = any(member.owns_modules for member in as_tuple(method))
        self.decisions: dict[int, Tensor] = {}

    def see_images(self, module: nn.Module, args: tuple) -> None:
        """Forward pre-hook on the patch embedding: remember the image size, for the recorder's patch grid."""
        self.input_size = tuple(args[0].shape[-2:]) if args and isinstance(args[0], Tensor) else None

    def __deepcopy__(self, memo: dict) -> "ReductionState":
        """A copy for a deep-copied model: its own hook handles (copied with the model's hook dicts), and never
        recording or mid-pass, whatever the original was doing."""
        copy = ReductionState.__new__(ReductionState)
        memo[id(self)] = copy
        for key, value in self.__dict__.items():
            copy.__dict__[key] = deepcopy(value, memo) if key in ("handles", "block_hooks") else value
        copy.recorder, copy.sizes, copy.log_sizes, copy.policy, copy.decisions = None, None, None, None, {}
        return copy

    def __getstate__(self) -> dict:
        """What a pickled (or torch.save'd) patched model keeps: everything but a recording or a pass under way.

        The hooks themselves travel with the model's modules (they are bound methods of the blocks and of this
        state, and a module-level function), and the handles with them, so the loaded model is patched alike."""
        state = dict(self.__dict__)
        state["recorder"], state["sizes"], state["log_sizes"], state["input_size"] = None, None, None, None
        state["policy"], state["decisions"] = None, {}
        return state


class ReducingBlock(Block):
    """A timm `Block` that can reduce its tokens between attention and MLP. Made only by `apply`."""

    _retokviz: ReductionState
    _retokviz_index: int
    _retokviz_qk: dict[str, Tensor] | None

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """x: [B, N, C] -> [B, N', C], N' <= N."""
        state = self._retokviz
        index = self._retokviz_index
        if index == 0:  # a new forward pass: every token stands for one patch again
            state.sizes = state.log_sizes = None
            num_patches = x.shape[1] - state.num_prefix
            state.policy, state.decisions, state.start, state.count = None, {}, num_patches, num_patches
            if num_patches < MIN_PATCHES and state.schedule:
                raise ValueError(
                    f"{state.model_name}: the image gives {num_patches} patch token(s); reducing needs at least "
                    f"{MIN_PATCHES}: use a larger image (this model was made for {state.image_size})"
                )
            if state.recorder is not None:
                state.recorder.begin(x, state.method, state.num_prefix, state.input_size)
        try:
            if state.learned:
                return self._forward_learned(state, index, x, args, kwargs)
            return self._forward(state, index, x, args, kwargs)
        finally:
            if index == state.depth - 1:
                state.sizes = state.log_sizes = state.policy = None  # the pass is over; hold no tensor between calls

    def _forward(self, state: ReductionState, index: int, x: Tensor, args: tuple, kwargs: dict) -> Tensor:
        recorder = state.recorder
        methods = state.schedule.get(index, ())
        acting = _acting(methods, x.shape[1] - state.num_prefix, index)
        masked = bool(args) or kwargs.get("attn_mask") is not None or bool(kwargs.get("is_causal"))
        if masked and (acting or state.sizes is not None):
            raise ValueError(
                f"{state.model_name}: block {index} reduces or merges tokens, which an attention mask or causal "
                "attention can't follow; call the model without attn_mask / is_causal"
            )
        # Proportional attention (ToMe): a token standing for s patches is attended as if it were there s times.
        bias = None if state.sizes is None or not state.proportional else _attention_bias(state, x.dtype)  # [B,1,1,N]
        if not (acting or (methods and recorder is not None)):
            x = super().forward(x, *args, **kwargs) if bias is None else super().forward(x, attn_mask=bias)
            if recorder is not None:
                recorder.add(None, None)
            return x

        self._retokviz_qk = {}
        try:
            attended = self.attn(self.norm1(x)) if bias is None else self.attn(self.norm1(x), attn_mask=bias)
            qk = self._retokviz_qk
        finally:
            self._retokviz_qk = None
        x = x + self.drop_path1(self.ls1(attended))
        first_view = view = AttentionView(qk["q_cls"], qk["k"], self.attn.scale, state.num_prefix, state.sizes,
                                          state.log_sizes)
        step: Regroup | None = None
        for position, method in enumerate(acting):
            last = position == len(acting) - 1
            if position:  # the next method sees the tokens the previous one left, scored again
                view = view.regrouped(reduced.step, reduced.sizes)
            reduced = method.reduce(x, view, index, track=recorder is not None or not last)
            x, state.sizes, state.log_sizes = reduced.x, reduced.sizes, None
            if reduced.step is not None:
                step = reduced.step if step is None else step.then(reduced.step)
        if recorder is not None:
            recorder.add(first_view.class_scores() if state.has_class_token else None, step)
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))

    def _forward_learned(self, state: ReductionState, index: int, x: Tensor, args: tuple, kwargs: dict) -> Tensor:
        """The block under a method that owns modules: reduce at the input (or, in training, decide a keep policy),
        then timm's block, its attention under the policy once there is one."""
        method, recorder = state.method, state.recorder
        reducing = False
        if index in state.schedule:
            after = count_after(method, state.count, index, state.start, state.depth)
            reducing, state.count = after != state.count, after
        masked = bool(args) or kwargs.get("attn_mask") is not None or bool(kwargs.get("is_causal"))
        if masked and (reducing or state.policy is not None):
            raise ValueError(
                f"{state.model_name}: block {index} prunes tokens, which an attention mask or causal attention "
                "can't follow; call the model without attn_mask / is_causal"
            )
        reduced = None
        if reducing:
            view = InputView(state.num_prefix, self._retokviz_modules, state.start, state.depth, state.policy,
                             self.training)
            reduced = method.reduce(x, view, index, track=recorder is not None)
            x = reduced.x
            if reduced.policy is not None:
                state.policy = reduced.policy
                state.decisions[index] = reduced.policy[:, state.num_prefix:]
        if state.policy is None:
            x = super().forward(x, *args, **kwargs)
        else:
            x = x + self.drop_path1(self.ls1(policy_attention(self.attn, self.norm1(x), state.policy)))
            x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        if recorder is not None:
            recorder.add(None if reduced is None else reduced.scores, None if reduced is None else reduced.step)
        return x

    def _retokviz_capture_q(self, module: nn.Module, args: tuple, q: Tensor) -> None:
        """Forward hook on attn.q_norm: keep the class token's query row, q: [B, H, N, d]."""
        if self._retokviz_qk is not None:
            self._retokviz_qk["q_cls"] = q[:, :, 0]

    def _retokviz_capture_k(self, module: nn.Module, args: tuple, k: Tensor) -> None:
        """Forward hook on attn.k_norm: keep the keys, k: [B, H, N, d]."""
        if self._retokviz_qk is not None:
            self._retokviz_qk["k"] = k


def _attention_bias(state: ReductionState, dtype: torch.dtype) -> Tensor:
    """[B, 1, 1, N] the proportional-attention bias log(size) of every key, for timm's attention (a float mask), in
    `dtype`. The log is taken once per change of the sizes (`state.log_sizes`), not at every block."""
    if state.log_sizes is None:
        state.log_sizes = state.sizes.log()
    batch, tokens = state.log_sizes.shape
    return as_dtype(state.log_sizes, dtype).view(batch, 1, 1, tokens)


def _acting(methods: tuple[Method, ...], num_tokens: int, block: int) -> list[Method]:
    """The methods of a block that change its `num_tokens` patch tokens, in order."""
    acting = []
    for method in methods:
        after = method.tokens_after(num_tokens, block)
        if after != num_tokens:
            acting.append(method)
        num_tokens = after
    return acting


_HOOKS = ("q_norm", ReducingBlock._retokviz_capture_q), ("k_norm", ReducingBlock._retokviz_capture_k)
_BLOCK_ATTRIBUTES = ("_retokviz", "_retokviz_index", "_retokviz_qk", "_retokviz_modules")


def model_name(model: nn.Module) -> str:
    """A model's timm name where timm recorded one, else its class name."""
    config = getattr(model, "pretrained_cfg", None) or {}
    architecture = config.get("architecture")
    return f"{architecture} ({type(model).__name__})" if architecture else type(model).__name__


def check_model(model: nn.Module, method: Method | tuple[Method, ...]) -> dict[int, tuple[Method, ...]]:
    """Check that `method` (or composed methods) can be applied to `model`; return its schedule.

    Raises:
        UnsupportedModelError: the model is not a supported timm ViT, or lacks what the method needs.
        ValueError: the method's layers lie outside the model's blocks.
    """
    name = model_name(model)
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
    learned = [m for m in as_tuple(method) if m.owns_modules]
    if learned and len(as_tuple(method)) > 1:
        raise ValueError(
            f"{type(learned[0]).__name__} is a learned method with modules of its own and runs alone; it can't be "
            f"composed with {', '.join(type(m).__name__ for m in as_tuple(method) if m is not learned[0])}"
        )
    ranking = [m for m in as_tuple(method) if m.needs_class_token]
    if ranking and model.cls_token is None:
        raise UnsupportedModelError(
            f"{name}: {type(ranking[0]).__name__} ranks patches by the class token's attention, and this model has no "
            f"class token (class_token=False, global_pool={model.global_pool!r})"
        )
    return schedule(method, len(model.blocks))


def apply(model: nn.Module, method: Method | Sequence[Method]) -> nn.Module:
    """Make `model` run `method`, in place; applying again replaces the method (cheap: nothing is rebuilt).

    Args:
        model: a timm VisionTransformer.
        method: a reduction method, e.g. rv.EViT(keep_rate=0.7), or a list of methods composed, e.g.
            [rv.ImagePiece(keep_rate=0.7), rv.ToMe(r=8)] (see `retokviz.methods.compose`).

    Returns:
        the same model.

    Raises:
        UnsupportedModelError, ValueError: before anything is changed, if the model or method doesn't fit.
    """
    method = compose(method)
    plan = check_model(model, method)
    modules = _own_modules(model, method)
    state = getattr(model, "_retokviz", None)
    proportional = all(getattr(member, "proportional", True) for member in as_tuple(method))
    if state is not None:
        state.method, state.schedule = method, plan
        state.learned = modules is not None
        state.proportional = proportional
        for block in model.blocks:
            block.__dict__["_retokviz_modules"] = modules
        _hook_blocks(model, state)
        return model
    state = ReductionState(
        model_name(model), method, plan, model.num_prefix_tokens, len(model.blocks), model.cls_token is not None
    )
    state.proportional = proportional
    for index, block in enumerate(model.blocks):
        block.__class__ = ReducingBlock
        block._retokviz, block._retokviz_index, block._retokviz_qk = state, index, None
        block.__dict__["_retokviz_modules"] = modules   # a reference, not a submodule of the block
    _hook_blocks(model, state)
    state.image_size = getattr(model.patch_embed, "img_size", None)
    state.handles.append(model.register_forward_pre_hook(_check_images))
    state.handles.append(model.patch_embed.register_forward_pre_hook(state.see_images))
    # An instance attribute (see below); a partial, not a bound method, so that the patched model pickles.
    model.forward_intermediates = partial(_forward_intermediates, model)
    model._retokviz = state
    return model


def _hook_blocks(model: nn.Module, state: ReductionState) -> None:
    """Hook q_norm and k_norm (the class attention's query and keys) on the blocks where something may reduce,
    and on no other: a block with nothing to do runs timm's own block without a hook to call. A method that owns
    modules reduces before attention and needs no hook."""
    if state.block_hooks is None:        # patched by an older retokviz: every block keeps its hooks
        return
    wanted = set() if state.learned else set(state.schedule)
    for index, block in enumerate(model.blocks):
        if index in wanted and index not in state.block_hooks:
            state.block_hooks[index] = tuple(getattr(block.attn, norm).register_forward_hook(hook.__get__(block))
                                             for norm, hook in _HOOKS)
        elif index not in wanted and index in state.block_hooks:
            for handle in state.block_hooks.pop(index):
                handle.remove()


def _own_modules(model: nn.Module, method: Method | tuple[Method, ...]) -> nn.Module | None:
    """The modules of `method` on `model` (registered as `model.retokviz_modules`): those it has if they fit,
    else fresh ones; None, and any it had taken out, when the method owns none.

    Raises:
        ValueError: the model carries modules that don't fit the method (nothing is changed).
    """
    owner = next((member for member in as_tuple(method) if member.owns_modules), None)
    modules = model._modules.get(MODULES)
    if owner is None:
        model._modules.pop(MODULES, None)
        return None
    if modules is not None:
        if not owner.fits_modules(modules, model):
            raise ValueError(
                f"{model_name(model)} carries modules (model.{MODULES}, a {type(modules).__name__}) that don't fit "
                f"{owner}, e.g. predictors for other blocks; rv.remove(model) first to drop them and start fresh "
                "ones"
            )
        return modules
    modules = owner.make_modules(model)
    model.add_module(MODULES, modules)
    return modules


def _image_rule(model: nn.Module) -> tuple[int, tuple[int, int] | None, tuple[int, int] | None]:
    """What images a timm ViT takes: (channels, the exact (H, W) or None, the (rows, cols) that H and W must be
    multiples of, or None where any size is padded to fit)."""
    embed = model.patch_embed
    if getattr(embed, "strict_img_size", False) and not getattr(model, "dynamic_img_size", False):
        return input_channels(model), tuple(embed.img_size), None
    if getattr(embed, "dynamic_img_pad", False):
        return input_channels(model), None, None
    return input_channels(model), None, tuple(embed.patch_size)


def expected_images(model: nn.Module) -> str:
    """What a patched model takes, in words: "[B, 3, 224, 224]" or "[B, 3, H, W] with H a multiple of 16 ..."."""
    channels, exact, multiple = _image_rule(model)
    if exact is not None:
        return f"[B, {channels}, {exact[0]}, {exact[1]}]"
    if multiple is None:
        return f"[B, {channels}, H, W]"
    return f"[B, {channels}, H, W] with H a multiple of {multiple[0]} and W a multiple of {multiple[1]}"


def _check_images(model: nn.Module, args: tuple) -> None:
    """Forward pre-hook on a patched model: refuse images of the wrong rank, channels, size or dtype (integer pixels,
    e.g. uint8 0..255), saying what fits."""
    if not args or not isinstance(args[0], Tensor):
        return
    if not args[0].is_floating_point():
        raise ValueError(
            f"{model_name(model)} takes float images normalised as in training, got a {args[0].dtype} tensor: "
            "convert with rv.images.prepare(image, model), or with images.float() / 255 and then "
            "rv.images.normalize(...)"
        )
    channels, exact, multiple = _image_rule(model)
    shape = tuple(args[0].shape)
    fits = len(shape) == 4 and shape[1] == channels
    if fits and exact is not None:
        fits = shape[2:] == exact
    elif fits and multiple is not None:
        fits = shape[2] % multiple[0] == 0 and shape[3] % multiple[1] == 0
    if not fits:
        raise ValueError(f"{model_name(model)} takes images {expected_images(model)}, got a tensor of shape {shape}")


def _forward_intermediates(model: nn.Module, x: Tensor, *args: Any, **kwargs: Any) -> Any:
    """timm's forward_intermediates, refused where the applied method reduces tokens.

    timm reshapes every block's tokens into the full patch grid, which a reduced token set no longer fills. A patched
    model carries this as an instance attribute (removed by `remove`); with nothing to reduce, it is timm's own.
    """
    state = state_of(model)
    rows, cols = model.patch_embed.dynamic_feat_size(tuple(x.shape[-2:])) if x.dim() == 4 else (0, 0)
    counts = token_counts(state.method, state.depth, rows * cols)
    if any(count != rows * cols for count in counts):
        raise RuntimeError(
            f"{state.model_name}: forward_intermediates reshapes every block's tokens into the {rows} x {cols} patch "
            f"grid, and {state.method} leaves {counts} patch tokens after the blocks. Record the per-block state "
            "with `with rv.record(model) as trace: model(images)`, or run timm's forward_intermediates inside "
            "`with rv.applied(model, rv.EViT(keep_rate=1.0)):` or after rv.remove(model)"
        )
    return type(model).forward_intermediates(model, x, *args, **kwargs)


def remove(model: nn.Module) -> nn.Module:
    """Undo `apply`: the model's blocks, hooks and attributes are timm's again. A no-op on an unpatched model."""
    if getattr(model, "_retokviz", None) is None:
        return model
    state = model._retokviz
    for handle in [*state.handles, *(h for hooks in (state.block_hooks or {}).values() for h in hooks)]:
        handle.remove()
    model._modules.pop(MODULES, None)
    model.__dict__.pop("forward_intermediates", None)
    for block in model.blocks:
        for attribute in _BLOCK_ATTRIBUTES:
            block.__dict__.pop(attribute, None)
        block.__class__ = Block
    del model._retokviz
    return model


def state_of(model: nn.Module) -> ReductionState:
    """The retokviz state of a patched model.

    Raises:
        RuntimeError: no method was applied to the model.
    """
    state = getattr(model, "_retokviz", None)
    if state is None:
        raise RuntimeError(
            f"{model_name(model)} has no retokviz method applied; call rv.apply(model, rv.EViT(...)) first "
            "(EViT(keep_rate=1.0) records class attention without reducing anything)"
        )
    return state


def method_of(model: nn.Module) -> Method | tuple[Method, ...] | None:
    """The method applied to `model` (a tuple for composed methods, as applied), or None."""
    state = getattr(model, "_retokviz", None)
    return None if state is None else state.method


@contextmanager
def applied(model: nn.Module, method: Method | Sequence[Method] | None) -> Iterator[nn.Module]:
    """Run `model` with `method` inside a `with` block, or untouched with None; on exit the method it had before
    (or none) is back, also when the block raises.

        with rv.applied(model, rv.EViT(keep_rate=0.5)):
            logits = model(images)
        with rv.applied(model, None):                  # the untouched model, whatever was applied
            logits = model(images)

    Raises:
        UnsupportedModelError, ValueError: before anything is changed, if the model or method doesn't fit.
    """
    previous = method_of(model)
    modules = model._modules.get(MODULES)    # a learned method's (trained) modules come back with it
    if method is not None:
        apply(model, method)
    elif previous is not None:
        remove(model)
    try:
        yield model
    finally:
        if previous is None:
            remove(model)
        else:
            if modules is not None and model._modules.get(MODULES) is not modules:
                model._modules.pop(MODULES, None)
                model.add_module(MODULES, modules)
            apply(model, previous)


def input_channels(model: nn.Module) -> int:
    """The image channels `model` takes: those of the first convolution of its patch embedding (timm's one
    projection, or the coherence stem's first 3 x 3 convolution)."""
    first = next((module for module in model.patch_embed.modules() if isinstance(module, nn.Conv2d)), None)
    if first is None:
        raise ValueError(f"{type(model.patch_embed).__name__} has no convolution to read the image channels from")
    return first.in_channels

"""Provenance: for every block, which original patches each token carries, and what happened to each patch.

    with rv.record(model) as trace:
        model(images)
    trace.layers[i].owner    # [B, P] the token (0-based among patch tokens) that carries each patch, -1 if discarded
    trace.layers[i].status   # [B, P] rv.Status of each patch

Recording costs nothing when it is off: the patched blocks skip all of it, and `record` adds no hook (the image
size comes from the hook `rv.apply` keeps on the patch embedding).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Iterator

import torch
from torch import Tensor, nn

from retokviz.methods.base import Method, Regroup
from retokviz.patch import state_of


class Status(IntEnum):
    """What happened to an original patch, as seen after a block."""

    KEPT = 0      # its token carries this patch alone
    MERGED = 1    # its token carries several patches (ToMe, ImagePiece pieces)
    FUSED = 2     # its token is the EViT fused token of the last reduction
    DROPPED = 3   # discarded (owner == -1)

    # A fused token that a later reduction keeps is an ordinary token from then on (as in EViT's code; see
    # docs/trace.md), one that carries several patches: its patches are MERGED. So all FUSED patches of a layer
    # share one token, the last.


def patches_per_token(owner: Tensor, num_tokens: int) -> Tensor:
    """owner [B, P] (-1 for discarded patches) -> [B, num_tokens] how many patches each token carries."""
    counts = torch.zeros(owner.shape[0], num_tokens + 1, dtype=torch.long, device=owner.device)
    return counts.scatter_add_(1, owner + 1, torch.ones_like(owner))[:, 1:]   # column 0 collected the discarded


class Provenance:
    """The patches each current patch token carries, updated by each reduction step.

    Attributes:
        owner: [B, P] for each original patch, the index of the token that carries it, or -1.
        fused: [B, T] whether each of the T current tokens is the fused token of the last reduction.
    """

    def __init__(self, batch: int, num_patches: int, device: torch.device) -> None:
        self.owner = torch.arange(num_patches, device=device).expand(batch, -1)
        self.fused = torch.zeros(batch, num_patches, dtype=torch.bool, device=device)

    @property
    def num_tokens(self) -> int:
        return self.fused.shape[1]

    def apply(self, step: Regroup) -> None:
        """Move every patch to the token that carries it after `step`."""
        carried = self.owner >= 0
        self.owner = step.dest.gather(1, self.owner.clamp(min=0)).masked_fill(~carried, -1)
        # Only the step's own fused token is a fused token: one kept by a later step is an ordinary token.
        fused = torch.zeros(step.dest.shape[0], step.num_out + 1, dtype=torch.bool, device=step.dest.device)
        self.fused = fused.scatter_(1, step.fused_index()[:, None] + 1, True)[:, 1:]   # column 0: images without one

    def status(self) -> Tensor:
        """[B, P] the rv.Status of every original patch."""
        tokens = self.owner.clamp(min=0)
        shared = patches_per_token(self.owner, self.num_tokens).gather(1, tokens) > 1
        status = torch.where(shared, Status.MERGED, Status.KEPT)
        status = torch.where(self.fused.gather(1, tokens), Status.FUSED, status)
        return torch.where(self.owner < 0, Status.DROPPED, status)

    def per_patch(self, values: Tensor) -> Tensor:
        """[B, T] token values -> [B, P] the value of the token carrying each patch (NaN for discarded patches)."""
        spread = values.gather(1, self.owner.clamp(min=0)).float()
        return spread.masked_fill(self.owner < 0, float("nan"))


@dataclass(frozen=True)
class LayerRecord:
    """The state leaving one block.

    Attributes:
        num_tokens: non-prefix tokens leaving the block.
        owner: [B, P] LongTensor, for each original patch the index (0-based among those tokens) of the token
            that carries it; -1 if discarded.
        status: [B, P] LongTensor of rv.Status values.
        scores: [B, P] float, at a reduction block: the class attention a_i that decided this block's reduction,
            of the token that carried each patch when the block received it (NaN for patches discarded earlier).
            None at the other blocks, and in models without a class token.
        token_scores: [B, T_in] the same class attention, one value per token the block received.
        step: the reduction the block made, as a Regroup of the tokens it received (`dest`, and for merging
            methods the `similarity` of each merged pair), or None.
    """

    num_tokens: int
    owner: Tensor
    status: Tensor
    scores: Tensor | None = None
    token_scores: Tensor | None = None
    step: Regroup | None = None

    @property
    def pieces(self) -> Tensor:
        """[B, P] the piece id of each MERGED patch (the index of its token), -1 for the other patches.

        Patches with one id were merged into one token: a renderer gives each id its own colour.
        """
        return self.owner.masked_fill(self.status != Status.MERGED, -1)

    @property
    def sizes(self) -> Tensor:
        """[B, num_tokens] how many original patches each token carries."""
        return patches_per_token(self.owner, self.num_tokens)

    def to(self, device: torch.device | str) -> "LayerRecord":
        """A copy with its tensors on `device`."""

        def move(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.to(device)

        step = self.step
        if step is not None:
            step = replace(step, dest=step.dest.to(device), similarity=move(step.similarity))
        return replace(
            self,
            owner=self.owner.to(device),
            status=self.status.to(device),
            scores=move(self.scores),
            token_scores=move(self.token_scores),
            step=step,
        )


@dataclass
class Trace:
    """Provenance of the last forward pass run inside `rv.record(model)`.

    Attributes:
        layers: one LayerRecord per block, in block order (empty until a forward pass ran).
        method: the reduction method in force during that pass.
        num_prefix_tokens: the model's prefix tokens (class token, registers), never reduced.
        grid_size: (rows, cols) of the patch grid, with rows * cols == P, or None where the patches are not a
            full grid (patch dropout in training).
    """

    layers: list[LayerRecord] = field(default_factory=list)
    method: Method | None = None
    num_prefix_tokens: int = 0
    grid_size: tuple[int, int] | None = None

    @property
    def num_patches(self) -> int:
        """P, the number of original patches."""
        return self.layers[0].owner.shape[1] if self.layers else 0

    def to(self, device: torch.device | str) -> "Trace":
        """A copy with every tensor on `device` (e.g. "cpu" before caching it for a widget)."""
        return replace(self, layers=[layer.to(device) for layer in self.layers])


class Recorder:
    """Builds a Trace while a recorded forward pass runs; the patched blocks call it."""

    def __init__(self, trace: Trace, patch_embed: nn.Module) -> None:
        self.trace = trace
        self.patch_embed = patch_embed
        self.provenance: Provenance | None = None
        self.status: Tensor | None = None

    def begin(self, x: Tensor, method: Method, num_prefix: int, image_size: tuple[int, int] | None) -> None:
        """Start a new forward pass. x: [B, N, C] the tokens entering block 0; image_size: (H, W) of the images."""
        batch, num_patches = x.shape[0], x.shape[1] - num_prefix
        self.provenance = Provenance(batch, num_patches, x.device)
        self.status = self.provenance.status()
        grid = None
        if image_size is not None and hasattr(self.patch_embed, "dynamic_feat_size"):
            rows, cols = self.patch_embed.dynamic_feat_size(image_size)
            grid = (rows, cols) if rows * cols == num_patches else None
        self.trace.layers = []
        self.trace.method = method
        self.trace.num_prefix_tokens = num_prefix
        self.trace.grid_size = grid

    def add(self, token_scores: Tensor | None, step: Regroup | None) -> None:
        """Record the state leaving the next block.

        Args:
            token_scores: [B, T] class attention of the tokens the block received, at a reduction block; else None.
            step: the reduction the block made, or None if it made none.
        """
        provenance = self.provenance
        scores = None if token_scores is None else provenance.per_patch(token_scores)
        token_scores = None if token_scores is None else token_scores.float()
        if step is not None:
            provenance.apply(step)
            self.status = provenance.status()
        self.trace.layers.append(
            LayerRecord(provenance.num_tokens, provenance.owner, self.status, scores, token_scores, step)
        )


@contextmanager
def record(model: nn.Module) -> Iterator[Trace]:
    """Record the provenance of the forward passes run inside the `with` block.

    The trace holds the last pass. The model must have a method applied (`rv.apply`); apply EViT(keep_rate=1.0)
    to record the class attention of a model without reducing anything.

    Raises:
        RuntimeError: the model has no retokviz method applied, or is already being recorded.
    """
    state = state_of(model)
    if state.recorder is not None:
        raise RuntimeError(f"{state.model_name} is already being recorded; nest no rv.record blocks on one model")
    trace = Trace()
    state.recorder = Recorder(trace, model.patch_embed)
    try:
        yield trace
    finally:
        state.recorder = None

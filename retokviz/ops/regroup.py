"""The record of one reduction step: which outgoing token carries each incoming patch token."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from retokviz.ops.merging import compose_dest


@dataclass(frozen=True)
class Regroup:
    """How one reduction step maps the patch tokens it received onto the patch tokens it leaves.

    Prefix tokens are never part of a regroup: they pass through unchanged.

    Attributes:
        dest: [B, T_in] LongTensor, for each incoming patch token the index (0-based among the outgoing
            patch tokens) of the token that now carries it, or -1 if it was discarded.
        num_out: T_out, the number of outgoing patch tokens.
        fused_slot: where the step's EViT fused token is among the outgoing tokens: an int when it is at one
            index in every image, a [B] LongTensor when it differs between images (-1 for an image without
            one), or None if the step made none. `fused_index()` gives it per image either way.
        similarity: [B, R] float32, for a merging step, the cosine similarity (in the matching's metric) of each
            of the R pairs it merged; None for steps that merge nothing.
    """

    dest: Tensor
    num_out: int
    fused_slot: int | Tensor | None = None
    similarity: Tensor | None = None

    def fused_index(self) -> Tensor:
        """[B] LongTensor: the outgoing index of each image's fused token, -1 where an image has none."""
        batch = self.dest.shape[0]
        if self.fused_slot is None:
            return torch.full((batch,), -1, dtype=torch.long, device=self.dest.device)
        if isinstance(self.fused_slot, Tensor):
            return self.fused_slot
        return torch.full((batch,), int(self.fused_slot), dtype=torch.long, device=self.dest.device)

    def then(self, later: "Regroup") -> "Regroup":
        """This step followed by `later` (a step on this step's output), as one step.

        Each image is followed on its own, so an image's result never depends on the rest of the batch: this
        step's fused token stays the fused token where the later step kept it alone and made none of its own.
        Nothing here waits for the device: where either step made a fused token, the result's `fused_slot` is a
        [B] tensor (-1 for an image whose fused token did not survive), never read back to decide.
        """
        dest = compose_dest(self.dest, later.dest)
        fused_slot = later.fused_slot
        if self.fused_slot is not None:
            fused = later.fused_index()                                                # [B]
            mine = self.fused_index()                                                  # [B]
            moved = later.dest.gather(1, mine.clamp(min=0)[:, None])[:, 0]             # [B]
            alone = (later.dest == moved[:, None]).sum(dim=1) == 1
            survives = (mine >= 0) & (moved >= 0) & alone & (fused < 0)
            fused_slot = torch.where(survives, moved, fused)
        similarity = self.similarity if later.similarity is None else later.similarity
        if self.similarity is not None and later.similarity is not None:
            similarity = torch.cat([self.similarity, later.similarity], dim=1)
        return Regroup(dest, later.num_out, fused_slot, similarity)

"""Class attention: how much the class token attends to each token, the importance score of EViT and ImagePiece.

timm computes attention with a fused kernel that never materialises the attention matrix. A reducing block needs
only one row of it, the class token's, so this module recomputes that row on the side from the block's own query
and keys (after q/k norm): O(N * d * H) beside the kernel's O(N^2 * d * H).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from retokviz.merging import merge_tokens

if TYPE_CHECKING:
    from retokviz.methods.base import Regroup


def class_attention(q_cls: Tensor, k: Tensor, scale: float, bias: Tensor | None = None) -> Tensor:
    """The class token's attention to every token, averaged over heads.

    Args:
        q_cls: [B, H, d] the class token's query, after q_norm.
        k: [B, H, N, d] the keys of all N tokens (prefix tokens included), after k_norm.
        scale: the logit scale, 1 / sqrt(d) in timm.
        bias: [B, N] an additive logit bias per key (proportional attention's log token size), or None.

    Returns:
        [B, N] float32: softmax over all N keys, then the mean over heads. Not renormalised over any subset.
    """
    logits = torch.einsum("bhd,bhnd->bhn", q_cls.float(), k.float()) * scale
    if bias is not None:
        logits = logits + bias.float()[:, None, :]
    return logits.softmax(dim=-1).mean(dim=1)


@dataclass
class AttentionView:
    """What a reducing block saw in its attention, handed to a reduction method.

    Scores are computed on first use and cached, so the method and the recorder share one computation.

    Attributes:
        q_cls: [B, H, d] the class token's query (after q_norm).
        k: [B, H, N, d] the keys of all tokens (after k_norm).
        scale: the attention logit scale.
        num_prefix: how many leading tokens are prefix tokens (class token, registers).
        sizes: [B, N] float32, the number of original patches each token stands for, or None where all are 1.
            With sizes, attention is proportional: log(size) is added to the logits towards each key.
    """

    q_cls: Tensor
    k: Tensor
    scale: float
    num_prefix: int
    sizes: Tensor | None = None
    _scores: Tensor | None = field(default=None, repr=False)

    def class_scores(self) -> Tensor:
        """[B, P] the class attention a_i of each patch token (the prefix columns left out, not renormalised)."""
        if self._scores is None:
            bias = None if self.sizes is None else self.sizes.log()
            self._scores = class_attention(self.q_cls, self.k, self.scale, bias)[:, self.num_prefix:]
        return self._scores

    def logits(self, keys: Tensor, sizes: Tensor | None) -> Tensor:
        """The class query's logits to tokens with `keys` [B, T, H * d] (heads side by side) and `sizes` [B, T]
        (log-size bias; None for none): [B, H, T] float32, to be softmaxed together with the other tokens'."""
        batch, heads, dim = self.q_cls.shape
        k = keys.reshape(batch, -1, heads, dim).float()
        logits = torch.einsum("bhd,bthd->bht", self.q_cls.float(), k) * self.scale
        return logits if sizes is None else logits + sizes.float().log()[:, None, :]

    def prefix_logits(self) -> Tensor:
        """[B, H, prefix] the class query's logits to the prefix tokens (with their size bias, if any)."""
        logits = torch.einsum("bhd,bhnd->bhn", self.q_cls.float(), self.k[:, :, :self.num_prefix].float())
        logits = logits * self.scale
        return logits if self.sizes is None else logits + self.sizes[:, None, :self.num_prefix].float().log()

    def patch_keys(self) -> Tensor:
        """[B, P, H * d] the keys of the patch tokens, heads side by side (one row per token, for merging)."""
        batch, heads, _, dim = self.k.shape
        return self.k[:, :, self.num_prefix:].transpose(1, 2).reshape(batch, -1, heads * dim)

    def patch_sizes(self) -> Tensor:
        """[B, P] float32 sizes of the patch tokens (ones where no sizes are tracked)."""
        if self.sizes is None:
            batch, _, tokens, _ = self.k.shape
            return torch.ones(batch, tokens - self.num_prefix, device=self.k.device)
        return self.sizes[:, self.num_prefix:].float()

    def regrouped(self, step: "Regroup", sizes: Tensor | None) -> "AttentionView":
        """The view after `step` regrouped the patch tokens, whose new sizes (prefix included) are `sizes`.

        A token's key becomes the size-weighted mean of the keys of the tokens it took in.
        """
        keys, merged_sizes = merge_tokens(self.patch_keys(), self.patch_sizes(), step.dest, step.num_out)
        patch_sizes = merged_sizes if sizes is None else sizes[:, self.num_prefix:]
        view = self.with_patches(keys, patch_sizes)
        if sizes is None:
            view.sizes = None
        return view

    def with_patches(self, keys: Tensor, sizes: Tensor) -> "AttentionView":
        """The view of a regrouped token set: same prefix tokens, patch keys [B, T, H * d] and sizes [B, T].

        Used where merged tokens are scored again (ImagePiece's re-evaluation, methods composed in one block):
        a merged token's key is the size-weighted mean of its members' keys, and its size biases the logits.
        """
        batch, heads, _, dim = self.k.shape
        prefix = self.num_prefix
        patch_k = keys.reshape(batch, -1, heads, dim).transpose(1, 2).to(self.k.dtype)
        prefix_sizes = (
            torch.ones(batch, prefix, device=sizes.device) if self.sizes is None else self.sizes[:, :prefix].float()
        )
        return AttentionView(
            self.q_cls,
            torch.cat([self.k[:, :, :prefix], patch_k], dim=2),
            self.scale,
            prefix,
            torch.cat([prefix_sizes, sizes.float()], dim=1),
        )

"""Class attention: how much the class token attends to each token, the importance score of EViT and ImagePiece.

timm computes attention with a fused kernel that never materialises the attention matrix. A reducing block needs
only one row of it, the class token's, so this module recomputes that row on the side from the block's own query
and keys (after q/k norm): O(N * d * H) beside the kernel's O(N^2 * d * H).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import torch
from torch import Tensor

from retokviz.ops.merging import merge_tokens
from retokviz.ops.tensors import as_dtype, as_float
from retokviz.ops.regroup import Regroup


def class_logits(q_cls: Tensor, k: Tensor, scale: float, bias: Tensor | None = None) -> Tensor:
    """The class token's attention logits to every token, per head: [B, H, N] float32.

    Args:
        q_cls: [B, H, d] the class token's query, after q_norm.
        k: [B, H, N, d] the keys, after k_norm.
        scale: the logit scale, 1 / sqrt(d) in timm.
        bias: [B, N] an additive logit bias per key (proportional attention's log token size), or None.
    """
    logits = torch.einsum("bhd,bhnd->bhn", as_float(q_cls), as_float(k)) * scale
    return logits if bias is None else logits + as_float(bias)[:, None, :]


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
    return class_logits(q_cls, k, scale, bias).softmax(dim=-1).mean(dim=1)


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
        log_sizes: [B, N] float32, sizes.log() where the block computed it already for its attention (shared, so
            it is computed once), or None (then computed here if needed).
    """

    q_cls: Tensor
    k: Tensor
    scale: float
    num_prefix: int
    sizes: Tensor | None = None
    log_sizes: Tensor | None = field(default=None, repr=False)
    _scores: Tensor | None = field(default=None, repr=False)

    def class_scores(self) -> Tensor:
        """[B, P] the class attention a_i of each patch token (the prefix columns left out, not renormalised)."""
        if self._scores is None:
            bias = None
            if self.sizes is not None:
                bias = self.log_sizes if self.log_sizes is not None else self.sizes.log()
            self._scores = class_attention(self.q_cls, self.k, self.scale, bias)[:, self.num_prefix:]
        return self._scores

    def logits(self, keys: Tensor, sizes: Tensor | None) -> Tensor:
        """The class query's logits to tokens with `keys` [B, T, H * d] (heads side by side) and `sizes` [B, T]
        (log-size bias; None where every token stands for one patch, log 1 = 0): [B, H, T] float32, to be
        softmaxed together with the other tokens'.

        Without sizes no bias is added: adding log 1 = 0 could only turn a logit of -0.0 into +0.0, which a
        softmax does not tell apart."""
        bias = None if sizes is None else as_float(sizes).log()
        return class_logits(self.q_cls, _per_head(keys, self.k.shape[1]), self.scale, bias)

    def prefix_logits(self) -> Tensor:
        """[B, H, prefix] the class query's logits to the prefix tokens (with their size bias, if any)."""
        prefix = self.num_prefix
        bias = None if self.sizes is None else as_float(self.sizes[:, :prefix]).log()
        return class_logits(self.q_cls, self.k[:, :, :prefix], self.scale, bias)

    def patch_keys(self) -> Tensor:
        """[B, P, H * d] the keys of the patch tokens, heads side by side (one row per token, for merging)."""
        batch, heads, tokens, dim = self.k.shape
        return self.k[:, :, self.num_prefix:].transpose(1, 2).reshape(batch, tokens - self.num_prefix, heads * dim)

    def mean_patch_keys(self) -> Tensor:
        """[B, P, d] the keys of the patch tokens averaged over heads (ToMe's similarity metric); the same numbers
        as `merging.head_mean_keys(self.patch_keys(), H)`, without laying the keys out token by token first."""
        return self.k[:, :, self.num_prefix:].mean(dim=1)

    def patch_sizes(self) -> Tensor:
        """[B, P] float32 sizes of the patch tokens (ones where no sizes are tracked)."""
        if self.sizes is None:
            batch, _, tokens, _ = self.k.shape
            return torch.ones(batch, tokens - self.num_prefix, device=self.k.device)
        return as_float(self.sizes[:, self.num_prefix:])

    def tracked_patch_sizes(self) -> Tensor | None:
        """[B, P] float32 sizes of the patch tokens, or None where no sizes are tracked (every token is one patch)."""
        return None if self.sizes is None else as_float(self.sizes[:, self.num_prefix:])

    def regrouped(self, step: Regroup, sizes: Tensor | None) -> "AttentionView":
        """The view after `step` regrouped the patch tokens, whose new sizes (prefix included) are `sizes`, or
        None where no sizes are tracked (methods composed in one block: the next one sees these tokens).

        A token's key becomes the size-weighted mean of the keys of the tokens it took in.
        """
        keys, _ = merge_tokens(self.patch_keys(), self.tracked_patch_sizes(), step.dest, step.num_out)
        prefix_k = self.k[:, :, :self.num_prefix]
        k = torch.cat([prefix_k, as_dtype(_per_head(keys, self.k.shape[1]), self.k.dtype)], dim=2)
        return AttentionView(self.q_cls, k, self.scale, self.num_prefix, sizes)


def _per_head(keys: Tensor, num_heads: int) -> Tensor:
    """[B, T, H * d] keys, heads side by side -> [B, H, T, d]."""
    batch, tokens, width = keys.shape
    return keys.reshape(batch, tokens, num_heads, width // num_heads).transpose(1, 2)

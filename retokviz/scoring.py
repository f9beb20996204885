"""Class attention: how much the class token attends to each token, the importance score of EViT and ImagePiece.

timm computes attention with a fused kernel that never materialises the attention matrix. A reducing block needs
only one row of it, the class token's, so this module recomputes that row on the side from the block's own query
and keys (after q/k norm): O(N * d * H) beside the kernel's O(N^2 * d * H).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


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
    """

    q_cls: Tensor
    k: Tensor
    scale: float
    num_prefix: int
    _scores: Tensor | None = field(default=None, repr=False)

    def class_scores(self) -> Tensor:
        """[B, P] the class attention a_i of each patch token (the prefix columns left out, not renormalised)."""
        if self._scores is None:
            self._scores = class_attention(self.q_cls, self.k, self.scale)[:, self.num_prefix:]
        return self._scores

"""Attention under a keep policy: how a learned pruner (DynamicViT) trains without dropping any token.

In training a pruner's hard keep decisions (1 keep, 0 drop, Gumbel-softmax with a straight-through gradient) are
carried to the attention of its block and of every later block instead of dropping tokens, so that the batch stays
rectangular and gradients reach the decisions. Row i of the attention weights becomes

    w_ij = exp(l_ij - max_j l_ij) * P_ij,    P_ij = p_j + (1 - p_j) * [i == j]
    a_ij = (w_ij + eps / N) / (sum_j w_ij + eps)

with l the logits and p the policy: a token attends to the kept tokens and to itself, never to another dropped
token, and a dropped token no longer changes the others. This is the softmax of Rao et al., "DynamicViT: Efficient
Vision Transformers with Dynamic Token Sparsification", NeurIPS 2021 (their `softmax_with_policy`, eps 1e-6,
computed in float32). The policy multiplies the weights rather than adding log(p) to the logits, so the gradient
towards a dropped token's decision is finite (log 0 would give NaN).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

EPS = 1e-6


def policy_softmax(logits: Tensor, policy: Tensor, eps: float = EPS) -> Tensor:
    """The attention weights of `logits` [B, H, N, N] under `policy` [B, N] (1 kept, 0 dropped): see the module."""
    batch, _, _, tokens = logits.shape
    keep = policy.reshape(batch, 1, 1, tokens)
    eye = torch.eye(tokens, dtype=keep.dtype, device=keep.device).view(1, 1, tokens, tokens)
    keep = keep + (1.0 - keep) * eye                                  # a token always attends to itself
    peak = logits.max(dim=-1, keepdim=True).values
    weights = (logits - peak).to(torch.float32).exp() * keep.to(torch.float32)
    weights = (weights + eps / tokens) / (weights.sum(dim=-1, keepdim=True) + eps)
    return weights.type_as(peak)


def policy_attention(attn: nn.Module, x: Tensor, policy: Tensor, bias: Tensor | None = None) -> Tensor:
    """timm's `Attention` module `attn` run on `x` [B, N, C] (already normalised by the block's norm1) with its
    softmax under `policy` [B, N]; `bias` [B, 1, 1, N] is added to the logits first (proportional attention's
    log size), or None. Returns the projected output [B, N, C]. The attention matrix is written out (no fused
    kernel): this runs in training only."""
    batch, tokens, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = attn.qkv(x).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q @ k.transpose(-2, -1)) * attn.scale
    if bias is not None:
        logits = logits + bias
    weights = attn.attn_drop(policy_softmax(logits, policy))
    out = (weights @ v).transpose(1, 2).reshape(batch, tokens, attn.num_heads * attn.head_dim)
    out = attn.norm(out)
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out))

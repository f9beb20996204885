"""The class-attention primitive against the attention PyTorch's kernel computes."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from retokviz.ops.class_attention import AttentionView, class_attention


def explicit_cls_row(q, k, bias=None):
    """Mean over heads of the CLS row of softmax(q k^T / sqrt(d) + bias), read off SDPA with identity values."""
    tokens = k.shape[2]
    eye = torch.eye(tokens).expand(*k.shape[:2], tokens, tokens)
    mask = None if bias is None else bias[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)[:, :, 0].mean(dim=1)


def test_matches_the_attention_row_with_and_without_a_bias():
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 7, 8, generator=generator), torch.randn(2, 3, 7, 8, generator=generator)
    scores = class_attention(q[:, :, 0], k, 8 ** -0.5)
    torch.testing.assert_close(scores, explicit_cls_row(q, k))
    assert torch.allclose(scores.sum(dim=1), torch.ones(2))
    sizes = torch.tensor([[1.0, 1, 2, 3, 1, 1, 4], [1.0, 5, 1, 1, 2, 1, 1]])
    biased = class_attention(q[:, :, 0], k, 8 ** -0.5, bias=sizes.log())
    torch.testing.assert_close(biased, explicit_cls_row(q, k, sizes.log()))
    assert not torch.allclose(biased, scores)


def test_view_leaves_out_the_prefix_columns_without_renormalising():
    generator = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 3, 8, generator=generator), torch.randn(2, 3, 9, 8, generator=generator)
    view = AttentionView(q, k, 8 ** -0.5, num_prefix=2)
    scores = view.class_scores()
    assert scores.shape == (2, 7) and bool((scores.sum(dim=1) < 1).all())
    torch.testing.assert_close(scores, class_attention(q, k, 8 ** -0.5)[:, 2:])
    assert view.class_scores() is scores, "computed once, shared by the method and the recorder"


def test_low_precision_inputs_give_float32_scores():
    q, k = torch.randn(1, 2, 4).bfloat16(), torch.randn(1, 2, 5, 4).bfloat16()
    assert class_attention(q, k, 0.5).dtype == torch.float32

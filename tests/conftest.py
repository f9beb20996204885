"""Tiny random timm ViTs of every family retokviz supports, small enough for a CPU in milliseconds."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import timm
import torch

import retokviz as rv

# Each family keeps what distinguishes it (LayerScale, registers, pre-norm, q/k norm, patch size); only the
# width, depth and image size shrink.
FAMILIES = {
    "deit": ("deit_small_patch16_224", {}),
    "vit_augreg": ("vit_small_patch16_224", {}),
    "deit3_layerscale": ("deit3_small_patch16_224", {}),
    "dinov2_registers": ("vit_small_patch14_reg4_dinov2", {}),
    "clip_prenorm": ("vit_base_patch16_clip_224", {}),
    "qk_norm": ("vit_small_patch16_224", {"qk_norm": True}),
}

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """benchmarks/NAME.py as a module (the scripts are not a package), imported once."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tiny_vit(family: str = "deit", depth: int = 4, grid: int = 4, seed: int = 0, **overrides) -> torch.nn.Module:
    """A random timm ViT of `family` with `depth` blocks, width 48 and a grid x grid patch grid, in eval mode.

    Weights are re-drawn at a larger scale than timm's init (LayerScale gammas included), so that every block
    changes its tokens visibly and a parity test can fail.
    """
    name, family_kwargs = FAMILIES[family]
    patch = 14 if "patch14" in name else 16
    kwargs = dict(depth=depth, embed_dim=48, num_heads=3, img_size=grid * patch, num_classes=10)
    kwargs.update(family_kwargs)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param_name.endswith("gamma"):
                param.uniform_(0.5, 1.5)
            elif param.dim() > 1 or "token" in param_name or "pos_embed" in param_name:
                param.normal_(0, 0.3)
    return model.eval()


def explicit_attention(block, x, bias=None):
    """timm's attention of `block` written out plainly: softmax(q k^T / sqrt(d) + bias) v.

    Args:
        x: [B, N, C] the block's input (norm1 is applied here); bias: [B, 1, 1, N] added to the logits, or None.

    Returns:
        the projected output [B, N, C], the attention weights [B, H, N, N] and the keys [B, H, N, d].
    """
    attn = block.attn
    h = block.norm1(x)
    B, N, C = h.shape
    qkv = attn.qkv(h).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = q @ k.transpose(-2, -1) * attn.scale
    weights = (logits if bias is None else logits + bias).softmax(dim=-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(B, N, C)), weights, k


def run(model, images):
    """The model's output on `images`, without gradients."""
    with torch.no_grad():
        return model(images)


def images_for(model: torch.nn.Module, batch: int = 2, seed: int = 1, size: tuple[int, int] | None = None):
    """A random batch of images of the model's size (or `size`)."""
    height, width = size or model.patch_embed.img_size
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="session")
def deit_small():
    """DeiT-S at full size (random weights: no download), shared by the tests that check the paper's numbers."""
    torch.manual_seed(0)
    return timm.create_model("deit_small_patch16_224", pretrained=False).eval()


@pytest.fixture(params=sorted(FAMILIES))
def family(request) -> str:
    return request.param


# CUDA runs where a GPU is present and shows as skipped (not passed) where none is.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def check_trace(trace, model, batch):
    """The invariants of the trace contract (docs/trace.md); returns nothing, asserts everything."""
    assert len(trace.layers) == len(model.blocks)
    rows, cols = trace.grid_size
    num_patches = rows * cols
    assert trace.num_patches == num_patches and trace.num_prefix_tokens == model.num_prefix_tokens
    previous = None
    for index, layer in enumerate(trace.layers):
        owner, status, tokens = layer.owner, layer.status, layer.num_tokens
        assert owner.shape == status.shape == (batch, num_patches), index
        assert owner.dtype == status.dtype == torch.long
        assert bool(((owner >= -1) & (owner < tokens)).all()), index
        for b in range(batch):  # every token carries at least one patch, every patch is in one token or dropped
            assert sorted(set(owner[b][owner[b] >= 0].tolist())) == list(range(tokens)), (index, b)
        assert torch.equal(status == rv.Status.DROPPED, owner == -1)
        counts = torch.stack([torch.bincount(o[o >= 0], minlength=tokens) for o in owner])
        per_patch = counts.gather(1, owner.clamp(min=0))
        assert bool((per_patch[status == rv.Status.KEPT] == 1).all())
        assert bool((per_patch[status == rv.Status.MERGED] > 1).all())
        for b in range(batch):  # an image's fused patches all point at its one fused token
            assert len(set(owner[b][status[b] == rv.Status.FUSED].tolist())) <= 1, (index, b)
        if previous is not None:  # a discarded patch stays discarded
            assert bool((owner[previous.owner == -1] == -1).all())
        previous = layer

"""DynamicViT: a learned token pruner, small prediction modules that score every patch token keep or drop.

Rao et al., "DynamicViT: Efficient Vision Transformers with Dynamic Token Sparsification", NeurIPS 2021 (arXiv
2106.02034), written from the paper and the authors' code (raoyongming/DynamicViT, MIT licence: models/dyvit.py's
`PredictorLG` and `VisionTransformerDiffPruning`). At its i-th reduction block (0-based), at the block's input,
before its attention:

1. The prediction module of that block scores the T patch tokens present: LayerNorm, Linear, GELU on each token;
   the first half of the channels is the token's local feature, the second half averaged over the tokens still
   kept (weighted by the keep policy) is the image's global feature; the two side by side go through an MLP
   (C -> C/2 -> C/4 -> 2, GELU between) to the log-probabilities of keep and drop.
2. Inference: the K = int(keep_rate ** (i + 1) * P) tokens (P: the patch tokens the pass started with; at least
   one) with the highest keep score stay, ordered by score as in the authors' code; the others are dropped.
3. Training (`model.training`): nothing is dropped. A hard Gumbel-softmax sample of the keep/drop decision (with a
   straight-through gradient), times the previous decision, is the new keep policy; the attention of this block
   and of every later one follows it (`retokviz.ops.policy`): a dropped token changes no other token. The
   decisions of each block are what the training loss's keep-ratio term reads (`retokviz.training.losses`).

Prefix tokens are never scored or dropped. The prediction modules are real modules of the model
(`model.retokviz_modules`, made by `rv.apply`, taken out by `rv.remove`): they are in its parameters, its
state_dict and its checkpoints, counted by `rv.count_macs`, and trained with it. Applying DynamicViT again at
another keep rate keeps them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retokviz.methods.base import InputView, Method, Reduced, check_layers, check_rate, resolve_layers
from retokviz.ops.regroup import Regroup

# the authors' initialisation of their Linear layers (timm's _init_weights: truncated normal, std 0.02, zero bias),
# drawn from a generator of its own so that applying the method leaves the global random state alone
_INIT_STD = 0.02
_INIT_SEED = 0
# the smallest number of kept tokens the global feature is averaged over (the policy is 0 or 1 per token)
_MIN_KEPT = 1e-6


class KeepPredictor(nn.Module):
    """One block's prediction module (the authors' `PredictorLG`): tokens [B, T, C] and their keep policy
    [B, T, 1] -> [B, T, 2] log-probabilities of keep (index 0) and drop (index 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.in_conv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.out_conv = nn.Sequential(
            nn.Linear(dim, dim // 2), nn.GELU(),
            nn.Linear(dim // 2, dim // 4), nn.GELU(),
            nn.Linear(dim // 4, 2), nn.LogSoftmax(dim=-1),
        )

    def forward(self, x: Tensor, policy: Tensor) -> Tensor:
        x = self.in_conv(x)
        batch, tokens, channels = x.shape
        local = x[:, :, :channels // 2]
        # the authors divide by the policy's sum alone: NaN where an image has no token left (training, few tokens)
        kept = policy.sum(dim=1, keepdim=True).clamp(min=_MIN_KEPT)
        pooled = (x[:, :, channels // 2:] * policy).sum(dim=1, keepdim=True) / kept
        return self.out_conv(torch.cat([local, pooled.expand(batch, tokens, -1)], dim=-1))


class KeepPredictors(nn.ModuleList):
    """DynamicViT's prediction modules on a model, one per reduction block, in block order (`layers`)."""

    def __init__(self, dim: int, layers: tuple[int, ...]) -> None:
        super().__init__(KeepPredictor(dim) for _ in layers)
        self.dim = dim
        self.layers = tuple(layers)


@dataclass(frozen=True)
class DynamicViT(Method):
    """Learned token pruning (DynamicViT).

    Args:
        keep_rate: the share of the patch tokens the first reduction block keeps, 0 < keep_rate <= 1; the i-th
            (0-based) keeps keep_rate ** (i + 1) of the patch tokens the model started with (the authors'
            compounding). 1.0 reduces nothing (the model's output is unchanged).
        layers: the reduction blocks, 0-based, where tokens are pruned at the block's input. None means
            depth//4, depth//2, 3*depth//4 ((3, 6, 9) for 12 blocks, the authors' DeiT placement).
    """

    keep_rate: float = 0.7
    layers: tuple[int, ...] | None = None

    has_keep_rate = True
    needs_class_token = False     # the predictors read the patch tokens only
    owns_modules = True
    counts_from_start = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_rate", check_rate("DynamicViT", "keep_rate", self.keep_rate))
        object.__setattr__(self, "layers", check_layers("DynamicViT", self.layers))

    def reduction_layers(self, depth: int) -> tuple[int, ...]:
        return resolve_layers("DynamicViT", self.layers, depth)

    def kept(self, start: int, stage: int) -> int:
        """K at the `stage`-th reduction block (0-based) of a pass that started with `start` patch tokens:
        int(start * keep_rate ** (stage + 1)) as the authors compute it, at least 1."""
        return max(1, int(start * self.keep_rate ** (stage + 1)))

    def tokens_after(self, num_tokens: int, block: int, *, start: int | None = None,
                     depth: int | None = None) -> int:
        if start is None or depth is None:
            raise TypeError("DynamicViT's token count depends on the patch tokens the pass started with and on the "
                            "model's depth: call tokens_after(num_tokens, block, start=..., depth=...), or "
                            "retokviz.methods.base.count_after")
        stage = self.reduction_layers(depth).index(block)
        return min(num_tokens, self.kept(start, stage))

    def make_modules(self, model: nn.Module) -> KeepPredictors:
        dim = model.embed_dim
        with torch.random.fork_rng(devices=[]):        # the layers' own initialisation draws from the global RNG
            modules = KeepPredictors(dim, self.reduction_layers(len(model.blocks)))
        generator = torch.Generator().manual_seed(_INIT_SEED)
        with torch.no_grad():
            for module in modules.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=_INIT_STD, generator=generator)
                    nn.init.zeros_(module.bias)
        reference = next(model.parameters())
        return modules.to(device=reference.device, dtype=reference.dtype)

    def fits_modules(self, modules: nn.Module, model: nn.Module) -> bool:
        return (isinstance(modules, KeepPredictors) and modules.dim == model.embed_dim
                and modules.layers == self.reduction_layers(len(model.blocks)))

    def reduce(self, x: Tensor, view: InputView, block: int, track: bool) -> Reduced:
        prefix = view.num_prefix
        stage = self.reduction_layers(view.depth).index(block)
        patches = x[:, prefix:]
        batch, tokens, channels = patches.shape
        previous = (torch.ones(batch, tokens, 1, dtype=x.dtype, device=x.device) if view.policy is None
                    else view.policy[:, prefix:, None])
        log_probs = view.modules[stage](patches, previous)                              # [B, T, 2]
        keep_score = log_probs[:, :, 0]
        if view.training:
            # a hard sample, straight-through; a token dropped before stays dropped
            decision = F.gumbel_softmax(log_probs, hard=True)[:, :, 0:1] * previous
            prefix_policy = torch.ones(batch, prefix, 1, dtype=decision.dtype, device=decision.device)
            policy = torch.cat([prefix_policy, decision], dim=1)[:, :, 0]
            return Reduced(x, None, None, scores=keep_score.detach().exp(), policy=policy)
        num_keep = self.tokens_after(tokens, block, start=view.start, depth=view.depth)
        keep = torch.argsort(keep_score, dim=1, descending=True)[:, :num_keep]           # by score, as the authors
        kept = patches.gather(1, keep.unsqueeze(-1).expand(-1, -1, channels))
        step = None
        if track:
            dest = torch.full((batch, tokens), -1, dtype=torch.long, device=x.device)
            dest.scatter_(1, keep, torch.arange(num_keep, device=x.device).expand(batch, -1))
            step = Regroup(dest, num_keep)
        return Reduced(torch.cat([x[:, :prefix], kept], dim=1), None, step, scores=keep_score.exp())

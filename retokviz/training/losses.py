"""DynamicViT's training objective: classification, the keep-ratio loss, and distillation from the untouched model.

Rao et al., "DynamicViT", NeurIPS 2021, as their code trains DeiT (losses.py, `DistillDiffPruningLoss_dynamic`,
with the weights main.py gives it for DeiT: clf_weight 1, ratio_weight 2.0, distill_weight 0.5, mse_token on):

    loss = CE(logits, labels)
         + ratio_weight / S * sum_i mean_b (mean_t D_i[b, t] - rho_i) ** 2          keep ratio, S stages
         + distill_weight * KL(softmax(teacher logits) || softmax(logits))         (batch mean)
         + distill_weight * mean over the kept tokens of (x_t - teacher x_t) ** 2    token distillation

D_i [B, P] is the hard keep decision of the i-th reduction block (1 kept, 0 dropped, drawn by Gumbel-softmax in
training), rho_i = keep_rate ** (i + 1) its target; the kept tokens are those the last decision keeps, the tokens
the last norm puts out (prefix tokens left out), compared with the teacher's at the same positions. The teacher is
a frozen copy of the model as training starts, with the method removed (`rv.remove` on a deep copy), in eval mode.

The authors fine-tune the backbone at 1/100 of the predictors' learning rate (`--lr_scale 0.01`): here
`TrainConfig.backbone_lr_scale` (`--backbone-lr-scale 0.01`); its default, 1, gives every parameter the same rate.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retokviz.methods.base import Methods
from retokviz.methods.dynamicvit import DynamicViT
from retokviz.patch import method_of, remove, state_of

RATIO_WEIGHT = 2.0
DISTILL_WEIGHT = 0.5
CLASSIFICATION_WEIGHT = 1.0


def keep_ratio_loss(decisions: Sequence[Tensor], targets: Sequence[float]) -> Tensor:
    """sum over stages of the batch mean of (share of tokens kept - target) ** 2; decisions [B, P] each."""
    loss = torch.zeros((), device=decisions[0].device) if decisions else torch.zeros(())
    for decision, target in zip(decisions, targets):
        loss = loss + ((decision.mean(1) - target) ** 2).mean()
    return loss


def token_distillation_loss(tokens: Tensor, teacher_tokens: Tensor, mask: Tensor) -> Tensor:
    """The mean squared difference of the tokens [B, P, C] the mask [B, P] keeps (> 0.5) from the teacher's; 0 where
    it keeps none."""
    batch, count, channels = tokens.shape
    keep = mask.reshape(batch * count) > 0.5
    if mask.sum() < 0.1:
        return tokens.new_zeros(())
    kept, taught = tokens.reshape(batch * count, channels)[keep], teacher_tokens.reshape(batch * count, channels)[keep]
    return (kept - taught).pow(2).mean()


def pruning_loss(logits: Tensor, tokens: Tensor, decisions: Sequence[Tensor], targets: Sequence[float],
                 num_stages: int, labels: Tensor, teacher_logits: Tensor, teacher_tokens: Tensor,
                 criterion: Callable[[Tensor, Tensor], Tensor], ratio_weight: float = RATIO_WEIGHT,
                 distill_weight: float = DISTILL_WEIGHT,
                 classification_weight: float = CLASSIFICATION_WEIGHT) -> tuple[Tensor, dict[str, Tensor]]:
    """DynamicViT's loss (see the module) and its four parts, each unweighted.

    Args:
        logits: [B, K] the model's; tokens: [B, P] x C its last norm's patch tokens.
        decisions: the keep decisions [B, P] of the stages that decided, targets: their target keep ratios.
        num_stages: S, the reduction blocks of the method (the ratio loss is divided by it).
        labels: what `criterion` compares the logits with (class indices, or soft targets under mixup).
        teacher_logits, teacher_tokens: the same from the teacher.
    """
    classification = criterion(logits, labels)
    ratio = keep_ratio_loss(decisions, targets).to(logits.device)
    distill = F.kl_div(F.log_softmax(logits, dim=-1), F.log_softmax(teacher_logits, dim=-1), reduction="batchmean",
                       log_target=True)
    mask = decisions[-1].detach() if decisions else torch.ones(tokens.shape[:2], device=tokens.device)
    token = token_distillation_loss(tokens, teacher_tokens, mask)
    loss = (classification_weight * classification + ratio_weight * ratio / max(1, num_stages)
            + distill_weight * distill + distill_weight * token)
    return loss, {"classification": classification, "ratio": ratio, "distill": distill, "token": token}


def uses_teacher(method: Methods | None) -> bool:
    """Whether training `method` needs the teacher (DynamicViT's distillation)."""
    return isinstance(method, DynamicViT)


def make_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of `model`, any method removed, in eval mode: the teacher."""
    teacher = remove(copy.deepcopy(model))
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def _run_with_tokens(network: nn.Module, norm: nn.Module, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """(logits, the output of the model's last norm) of one forward pass through `network`."""
    seen: list[Tensor] = []
    handle = norm.register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        logits = network(inputs)
    finally:
        handle.remove()
    return logits, seen[-1]


class PruningObjective:
    """DynamicViT's objective as `train` uses it: `objective(network, inputs, labels) -> (logits, loss)`.

    Args:
        model: the model being trained (DynamicViT applied; `network` may wrap it in DistributedDataParallel).
        teacher: from `make_teacher`, on the model's device; None (with distill_weight 0) trains without one.
        criterion: the classification loss (label smoothing, or soft targets under mixup).
    """

    def __init__(self, model: nn.Module, teacher: nn.Module | None, criterion: Callable[[Tensor, Tensor], Tensor],
                 ratio_weight: float = RATIO_WEIGHT, distill_weight: float = DISTILL_WEIGHT) -> None:
        if teacher is None and distill_weight != 0:
            raise ValueError(f"distill_weight={distill_weight} needs a teacher; without one it must be 0")
        self.model, self.teacher, self.criterion = model, teacher, criterion
        self.ratio_weight, self.distill_weight = ratio_weight, distill_weight
        self.parts: dict[str, Tensor] = {}     # the last step's four parts, unweighted, detached

    def __call__(self, network: nn.Module, inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        model, prefix = self.model, self.model.num_prefix_tokens
        logits, features = _run_with_tokens(network, model.norm, inputs)
        state = state_of(model)
        decided, state.decisions = state.decisions, {}
        method = method_of(model)
        layers = method.reduction_layers(len(model.blocks))
        decisions = [decided[block] for block in layers if block in decided]
        targets = [method.keep_rate ** (stage + 1) for stage, block in enumerate(layers) if block in decided]
        if self.teacher is None:    # no teacher: the model's own outputs, detached, make both distillations 0
            teacher_logits, teacher_features = logits.detach(), features.detach()
        else:
            with torch.no_grad():
                teacher_logits, teacher_features = _run_with_tokens(self.teacher, self.teacher.norm, inputs)
        loss, parts = pruning_loss(logits.float(), features[:, prefix:].float(), decisions, targets, len(layers),
                                   labels, teacher_logits.float(), teacher_features[:, prefix:].float(),
                                   self.criterion, self.ratio_weight, self.distill_weight)
        self.parts = {name: value.detach() for name, value in parts.items()}
        return logits.float(), loss

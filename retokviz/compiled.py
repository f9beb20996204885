"""A model compiled for inference: where token reduction pays at batch 1 on a small model.

    model = rv.apply(rv.load_checkpoint("showcase-baseline"), rv.ImagePiece(keep_rate=0.7))
    fast = rv.compile_for_inference(model)
    with torch.inference_mode():
        logits = fast(images)          # the first call compiles (seconds); later calls of this shape are fast

A reduction step is dozens of small operators (a ranking, gathers, the matching's similarities and scatters). Run
eagerly, each one costs the same few microseconds of Python and dispatch whatever the number of tokens, and on a
model that takes 3 ms a pass that fixed cost can outweigh the tokens saved (ImagePiece and ToMe on the bundled
showcase model at batch 1, docs/results.md). `torch.compile` removes most of it; two of inductor's options remove
the rest on a CPU:

- `freezing`: the weights become constants of the graph, which inductor may fold or prepack;
- `cpp_wrapper`: the compiled graph calls its kernels, and the operators it leaves to PyTorch (sorts, top-k), from
  C++ instead of Python, which is most of what a reduction step still costs once compiled.

A patched model compiles to one graph (no graph break: every token count is arithmetic on shapes), so this is the
same `torch.compile` a user could call, with these settings. What freezing implies: inductor may treat the weights
as constants (fold them, prepack them), so after changing weights (training, loading a checkpoint) compile again;
whether an old compiled graph sees such a change is not guaranteed. It freezes only calls made without gradients
(under `torch.inference_mode()` or `torch.no_grad()`). A new input shape (another batch size) compiles again, and so
does the first call after another method is applied to the model (`rv.apply`).

Measured on the 2-core development CPU at batch 1 (docs/results.md): the operators the graph hands back to PyTorch
are what keeps ImagePiece and ToMe behind the compiled untouched model without `cpp_wrapper`; with it they are ahead.
"""
from __future__ import annotations

import torch
from torch import nn


# inductor's settings for a frozen, C++-driven graph (see the module's docstring)
INFERENCE_OPTIONS = {"freezing": True, "cpp_wrapper": True}


def compile_for_inference(model: nn.Module) -> nn.Module:
    """`model` (patched or untouched, in eval mode) under `torch.compile` with the settings that make token
    reduction pay at small scale: weights frozen into the graph, the graph driven from C++, one shape per compile.

    Args:
        model: a timm ViT in eval mode, with a method applied (`rv.apply`) or none.

    Returns:
        the compiled module; call it without gradients. The model itself is not changed.

    Raises:
        ValueError: the model is in training mode (freezing serves inference only; call `model.eval()` first).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"compile_for_inference takes a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("compile_for_inference compiles for inference and this model is in training mode: call "
                         "model.eval() first (to train a patched model compiled, use torch.compile(model))")
    return torch.compile(model, dynamic=False, options=dict(INFERENCE_OPTIONS))

"""retokviz: token reduction in vision transformers, on any timm ViT, with per-layer provenance.

    import timm, retokviz as rv

    model = timm.create_model("deit_small_patch16_224")
    rv.apply(model, rv.EViT(keep_rate=0.7))      # patch in place; applying again replaces the method
    rv.apply(model, rv.ImagePiece(keep_rate=0.7))                    # or rv.ToMe(r=13)
    rv.apply(model, [rv.ImagePiece(keep_rate=0.7), rv.ToMe(r=8)])    # composed
    with rv.record(model) as trace:              # which original patches are kept, fused, merged or dropped
        logits = model(images)
    rv.remove(model)                             # the untouched model, exactly
"""
from retokviz import analysis, bundled, data, intervals, metrics, notebook, robustness, weights
from retokviz.checkpoints import CheckpointError, CheckpointInfo, checkpoints, export_checkpoint, load_checkpoint
from retokviz.macs import count_macs
from retokviz.methods import EViT, ImagePiece, Method, ToMe
from retokviz.methods.budget import method_at
from retokviz.methods.registry import method_names
from retokviz.patch import UnsupportedModelError, applied, apply, method_of, remove
from retokviz.provenance import LayerRecord, Status, Trace, record
from retokviz.stem import CoherenceStem, use_coherence_stem
from retokviz.sweep import SweepConfig, sweep
import retokviz.train  # noqa: F401  the command line's package, loaded before `train` is bound to the function
from retokviz.training import TrainConfig, TrainResult, train

__version__ = "0.1.0"


def explore(*args, **kwargs):
    """The interactive explorer (ipywidgets): `rv.explore()` offline, `rv.explore(model, images, masks)`, or
    `rv.explore("deit_small_patch16_224")`. See `retokviz.explorer.explore`; ipywidgets and plotly are imported
    only here, so `import retokviz` stays free of them."""
    from retokviz.explorer import explore as _explore

    return _explore(*args, **kwargs)


__all__ = [
    "analysis",
    "intervals",
    "data",
    "metrics",
    "notebook",
    "robustness",
    "weights",
    "CheckpointError",
    "CheckpointInfo",
    "TrainConfig",
    "TrainResult",
    "checkpoints",
    "export_checkpoint",
    "load_checkpoint",
    "train",
    "CoherenceStem",
    "EViT",
    "ImagePiece",
    "LayerRecord",
    "Method",
    "Status",
    "ToMe",
    "Trace",
    "UnsupportedModelError",
    "applied",
    "apply",
    "method_at",
    "method_names",
    "count_macs",
    "SweepConfig",
    "sweep",
    "explore",
    "method_of",
    "record",
    "remove",
    "use_coherence_stem",
]

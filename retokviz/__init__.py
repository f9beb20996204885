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
from retokviz import analysis, data
from retokviz.checkpoints import CheckpointError, CheckpointInfo, checkpoints, export_checkpoint, load_checkpoint
from retokviz.macs import count_macs
from retokviz.methods import EViT, ImagePiece, Method, ToMe
from retokviz.patch import UnsupportedModelError, apply, method_of, remove
from retokviz.provenance import LayerRecord, Status, Trace, record
from retokviz.stem import CoherenceStem, use_coherence_stem
from retokviz.training import TrainConfig, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "analysis",
    "data",
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
    "apply",
    "count_macs",
    "method_of",
    "record",
    "remove",
    "use_coherence_stem",
]

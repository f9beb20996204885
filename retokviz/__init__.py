"""retokviz: token reduction in vision transformers, on any timm ViT, with per-block provenance.

    import timm, retokviz as rv

    model = timm.create_model("deit_small_patch16_224")
    rv.apply(model, rv.EViT(keep_rate=0.7))      # patch in place; applying again replaces the method
    rv.apply(model, rv.ImagePiece(keep_rate=0.7))                    # or rv.ToMe(r=13), rv.DynamicViT(0.7)
    rv.apply(model, [rv.ImagePiece(keep_rate=0.7), rv.ToMe(r=8)])    # composed
    with rv.record(model) as trace:              # which original patches are kept, fused, merged or dropped
        logits = model(images)
    rv.remove(model)                             # the untouched model, exactly

The package follows the data: images -> ops (token operations) -> methods -> patch (the reducing block) -> trace
(recording and reading) -> models, data -> measure -> sweep -> views -> explorer, training -> tutorial.
Importing it loads none of matplotlib, plotly, ipywidgets, scikit-learn or scikit-image; they load on first use.
"""
from retokviz import data, sweep
from retokviz._util import VERSION
from retokviz.compiled import compile_for_inference
from retokviz.measure import analysis, intervals, metrics, robustness
from retokviz.measure.macs import count_macs
from retokviz.methods import DynamicViT, EViT, ImagePiece, Method, ToMe
from retokviz.methods.budget import method_at
from retokviz.methods.registry import method_names
from retokviz.models import bundled, weights
from retokviz.models.checkpoints import CheckpointError, CheckpointInfo, checkpoints, export_checkpoint, load_checkpoint
from retokviz.models.stem import CoherenceStem, use_coherence_stem
from retokviz.patch import UnsupportedModelError, applied, apply, method_of, remove
from retokviz.sweep import SweepConfig
from retokviz.trace.record import LayerRecord, Status, Trace, record
from retokviz.training import TrainConfig, TrainResult, train
from retokviz.tutorial import setup as notebook

__version__ = VERSION


def explore(*args, **kwargs):
    """The interactive explorer (ipywidgets): `rv.explore()` offline, `rv.explore(model, images, masks)`, or
    `rv.explore("deit_small_patch16_224")`. See `retokviz.explorer.explore`; ipywidgets and plotly load here, on
    first use, so `import retokviz` stays light."""
    from retokviz.explorer import explore as _explore

    return _explore(*args, **kwargs)


def compare(*args, **kwargs):
    """Two or three methods side by side on one image at an equal token budget (ipywidgets), with one keep-rate
    slider and one block slider linked to every column: `rv.compare()` offline, `rv.compare(model, images, masks,
    methods=("evit", "tome"))`. See `retokviz.explorer.compare.compare`; ipywidgets loads here, on first use."""
    from retokviz.explorer.compare import compare as _compare

    return _compare(*args, **kwargs)


__all__ = [
    "compile_for_inference",
    "analysis",
    "intervals",
    "data",
    "metrics",
    "notebook",
    "robustness",
    "weights",
    "bundled",
    "CheckpointError",
    "CheckpointInfo",
    "TrainConfig",
    "TrainResult",
    "checkpoints",
    "export_checkpoint",
    "load_checkpoint",
    "train",
    "CoherenceStem",
    "DynamicViT",
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
    "compare",
    "method_of",
    "record",
    "remove",
    "use_coherence_stem",
]

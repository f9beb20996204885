"""The interactive explorer: drag a keep rate, a block, a method, a view, and see which patches a model keeps,
merges, fuses or drops, what it predicts, and what that costs.

    ex = rv.explore()                                  # offline: the bundled checkpoints on generated test images
    ex = rv.explore(model, images, masks)              # any supported timm ViT, images [N, 3, H, W] normalised
    ex = rv.explore("deit_small_patch16_224")          # a timm name: pretrained weights where they can be had
    ex.keep_rate.value = 0.5                           # controls are ipywidgets; set them in code or drag them
    ex.save_html("build/explorer.html")                # a standalone page: every keep rate and block, offline
    rv.explore(tradeoff="sweep.csv")                   # with a sweep table's measured speed and accuracy
    ex                                                 # as a cell's last line: the widget

ipywidgets and plotly are imported when an explorer is made, never by `import retokviz`.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from retokviz.models.bundled import name as bundled_name
from retokviz.explorer.inputs import DEFAULT_IMAGES, Gallery, model_size, resolve_models
from retokviz.explorer.session import THREADS, Session

__all__ = ["explore", "Explorer", "Session", "session_for"]


def __getattr__(name: str) -> Any:
    if name == "Explorer":   # the widget module imports ipywidgets only when used
        from retokviz.explorer.widget import Explorer

        return Explorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def explore(
    model: Any = None,
    images: Any = None,
    masks: Any = None,
    *,
    labels: Any = None,
    class_names: list[str] | None = None,
    weights: str | None = None,
    method: str | None = None,
    keep_rate: float | None = None,
    view: str = "status",
    block: int | None = None,
    image: int = 0,
    num_images: int = DEFAULT_IMAGES,
    threads: int | None = THREADS,
    tradeoff: Any = "auto",
    layer: int | None = None,
):
    """An explorer of token reduction on `model`.

    Args:
        model: None (the bundled showcase models, rv.bundled, on generated clutter test images with their digit
            masks), a timm ViT, a bundled checkpoint name, a timm model name (pretrained weights from `weights`, the local
            cache or the hub; where there are none, one line says so and the bundled models are shown), or a
            mapping name -> any of those.
        images: [N, 3, H, W] normalised as the model expects; None: generated clutter for the bundled models,
            scikit-image's bundled photographs for others. Another size than the model's is resized.
        masks: [N, H, W] bool, the object's pixels (the "removed background" view needs them), or None.
        labels: [N] true class indices, or None.
        class_names: the classes by index (default: digits for the bundled models, ImageNet's for 1000 classes).
        weights: a weights file for a timm model name.
        method, keep_rate, view, block, image: the first setting shown (method: "evit", "imagepiece", "tome" or
            "imagepiece+tome"; default: the model's own method, at its keep rate, else EViT at 0.7).
        num_images: how many generated images when `images` is None.
        threads: torch threads for the explorer's one-image passes (default 1; None: torch's own setting).
        tradeoff: the measured trade-off shown beside the picture (speed-up, latency and top-1 of the setting shown)
            and in a panel below it: a sweep table (`python -m retokviz.sweep`: a CSV path, its rows or a pandas
            DataFrame); "auto": the committed table of the bundled set shown (rv.bundled.sweep_table), where
            there is one; None: none.
        layer: the former name of `block` (deprecated).

    Returns:
        an Explorer (ipywidgets); show it as a cell's last line.

    Raises:
        rv.UnsupportedModelError: a model that is not a supported timm ViT (before anything is drawn).
        ValueError: images not [N, 3, H, W]; an unknown method or view (the message lists the valid ones); a
            tradeoff table without the sweep's columns or rows.
        FileNotFoundError: a tradeoff table path that does not exist.
    """
    from retokviz.explorer.widget import Explorer, _renamed

    block = _renamed(block, layer)
    models, note = resolve_models(model, weights)
    table, source = _tradeoff_table(tradeoff, models)
    session = session_for(models, images, masks, labels=labels, class_names=class_names, num_images=num_images,
                          threads=threads)
    default = bundled_name("EViT") if bundled_name("EViT") in models else next(iter(models))
    if keep_rate is None:
        keep_rate = getattr(_own(models[default]), "keep_rate", None) if method is None else None
    return Explorer(session, model=default, method=method, keep_rate=keep_rate, view=view, block=block,
                    image=image, note=note, tradeoff=table, tradeoff_source=source)


def session_for(models: dict[str, nn.Module], images: Any = None, masks: Any = None, *, labels: Any = None,
                class_names: list[str] | None = None, num_images: int = DEFAULT_IMAGES,
                threads: int | None = THREADS) -> Session:
    """The explorer's Session of `models` (from resolve_models) on `images`, as `explore` makes it; `rv.compare`
    and the tutorial's lesson widgets make theirs here too.

    Args:
        images, masks, labels, class_names, num_images, threads: as `explore` takes them. Without images: generated
            clutter test images with their digit masks for the bundled models, scikit-image's photographs for others.

    Raises:
        ValueError: images not [N, 3, H, W], or masks or labels that don't match them.
    """
    first = next(iter(models.values()))
    bundled = _bundled_names() >= set(models)
    if images is not None:
        gallery = Gallery.from_images(images, masks, first, labels=labels)
    elif bundled:   # generated clutter test images, with their digit masks
        from retokviz import data

        images, labels, masks = data.make_clutter(num_images, seed=0, split="test", image_size=model_size(first)[0])
        gallery = Gallery.from_images(images, masks, first, labels=labels,
                                      names=[f"digit {int(label)}" for label in labels])
    else:           # scikit-image's bundled photographs
        from retokviz import data

        gallery = Gallery.from_pictures([data.sample_photo(name, 256)[1] for name in data.PHOTOS], data.PHOTOS)
    names_by_model = {name: class_names or _class_names(network, bundled) for name, network in models.items()}
    return Session(models, gallery, names_by_model, threads=threads)


def _tradeoff_table(tradeoff: Any, models: dict[str, nn.Module]) -> tuple[list[dict] | None, str]:
    """The sweep table's rows and a name for it (see `explore`'s tradeoff), checked before anything is drawn."""
    import os

    from retokviz.models import bundled
    from retokviz.views.tradeoff import load_rows

    if tradeoff is None:
        return None, ""
    if isinstance(tradeoff, str) and tradeoff == "auto":
        set_name = bundled.set_of(models)
        path = None if set_name is None else bundled.sweep_table(set_name)
        return (None, "") if path is None else (load_rows(path), path.name)
    rows = load_rows(tradeoff)          # FileNotFoundError for a path with no file, naming it
    source = os.path.basename(os.fspath(tradeoff)) if isinstance(tradeoff, (str, os.PathLike)) else \
        "the sweep table given"
    if not rows:
        raise ValueError(f"tradeoff: the sweep table {source} has no rows")
    return rows, source


def _own(model: nn.Module):
    from retokviz.patch import method_of

    return method_of(model)


def _bundled_names() -> set[str]:
    from retokviz.models.checkpoints import checkpoints

    return {info.name for info in checkpoints()}


def _class_names(model: nn.Module, bundled: bool) -> list[str] | None:
    """Digits for the bundled clutter models, ImageNet's class names for a 1000-class model, else None."""
    from retokviz import data

    if bundled:
        return list(data.CLASSES)
    if getattr(model, "num_classes", None) == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(index) for index in range(1000)]
    return None

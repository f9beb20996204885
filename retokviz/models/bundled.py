"""The checkpoints bundled in data/, by role: one place that says which file is the baseline, which was trained
with EViT, and so on, for the evaluation, the notebooks, the explorer and the tests.

    rv.bundled.name("EViT")                    # 'showcase-evit-0.7'
    rv.bundled.name("none", "small")           # 'small-baseline'
    rv.bundled.checkpoints("showcase")         # {'none': 'showcase-baseline', 'EViT': ..., ...}
    rv.load_checkpoint(rv.bundled.name("ImagePiece"))
    rv.bundled.sweep_table("showcase")         # results/sweep-cpu-showcase.csv: its measured trade-off
    rv.bundled.sweep_table("showcase", compiled=True)   # the same, rv.compile_for_inference'd (keep 0.7 and 0.5)

Two sets of models, each trained on the generated clutter data and differing only in the reduction method:
- "showcase": 6 blocks on a 12 x 12 grid (192 px), EViT and ImagePiece reducing at blocks 1, 3 and 4 (about a
  quarter, half and three quarters of the depth, as in DeiT-S); the models the README's tables, the explorer and
  the notebooks use; with a fifth, fine-tuned with DynamicViT (its learned predictors at the same blocks);
- "small": 4 blocks on an 8 x 8 grid (128 px), about half the compute; the unit tests use them for speed. Its ToMe
  model was trained with the spatial-order variant of ToMe (`ToMe(order="spatial")`), as it records. Their former
  names (FORMER_NAMES, e.g. "clutter-vit-baseline") still load them.
"""
from __future__ import annotations

from pathlib import Path

SETS: dict[str, dict[str, str]] = {   # set -> method (as people write it; "none": no reduction) -> checkpoint
    "showcase": {"none": "showcase-baseline", "EViT": "showcase-evit-0.7",
                 "ImagePiece": "showcase-imagepiece-0.7-stem", "ToMe": "showcase-tome",
                 "DynamicViT": "showcase-dynamicvit-0.7"},
    "small": {"none": "small-baseline", "EViT": "small-evit-0.7",
              "ImagePiece": "small-imagepiece-0.7-stem", "ToMe": "small-tome-spatial"},
}
DEFAULT_SET = "showcase"
# The seed of the generated test images the bundled models are measured on: no training run and no design choice
# used it (benchmarks/evaluate.py, benchmarks/seed_figures.py, the bundled models' accuracy test).
TEST_SEED = 1001
# The small set's names before the showcase set came (the sweep's documented command uses one): each still loads
# the checkpoint it named.
FORMER_NAMES: dict[str, str] = {"clutter-vit-baseline": "small-baseline", "clutter-vit-evit-0.7": "small-evit-0.7",
                                "clutter-vit-imagepiece-0.7-stem": "small-imagepiece-0.7-stem",
                                "clutter-vit-tome": "small-tome-spatial"}
# The committed sweep tables (python -m retokviz.sweep) measured on a set, in results/; the explorer reads them.
RESULTS_DIR = Path(__file__).parents[2] / "results"
SWEEP_TABLES: dict[str, str] = {"showcase": "sweep-cpu-showcase.csv"}
COMPILED_SWEEP_TABLES: dict[str, str] = {"showcase": "sweep-cpu-showcase-compiled.csv"}


def checkpoints(set_name: str = DEFAULT_SET) -> dict[str, str]:
    """A set's checkpoint names by method ("none", "EViT", "ImagePiece", "ToMe"; the showcase set: "DynamicViT").

    Raises:
        ValueError: an unknown set; the message lists the valid ones.
    """
    if set_name not in SETS:
        raise ValueError(f"unknown checkpoint set {set_name!r}; valid: {', '.join(SETS)}")
    return dict(SETS[set_name])


def name(method: str = "none", set_name: str = DEFAULT_SET) -> str:
    """The bundled checkpoint trained with `method` ("none", "EViT", "ImagePiece", "ToMe" or, in the showcase set,
    "DynamicViT"; any case) in a set.

    Raises:
        ValueError: an unknown set or method; the message lists the valid ones.
    """
    by_lower = {key.lower(): value for key, value in checkpoints(set_name).items()}
    if method.lower() not in by_lower:
        raise ValueError(f"no bundled checkpoint for method {method!r}; valid: {', '.join(SETS[set_name])}")
    return by_lower[method.lower()]


def sweep_table(set_name: str = DEFAULT_SET, *, compiled: bool = False) -> Path | None:
    """The committed sweep table of a set (accuracy, speed and MACs of every method and keep rate, measured on its
    baseline), or None where the set has none or the file is not there (an installation without results/).
    `compiled=True`: the table of the same models compiled with `rv.compile_for_inference` (`--compile`).

    Raises:
        ValueError: an unknown set; the message lists the valid ones.
    """
    checkpoints(set_name)                                       # checks the name
    tables = COMPILED_SWEEP_TABLES if compiled else SWEEP_TABLES
    path = RESULTS_DIR / tables[set_name] if set_name in tables else None
    return path if path is not None and path.is_file() else None


def set_of(names) -> str | None:
    """The set that holds every checkpoint named in `names`, or None where no one set does."""
    names = set(names)
    return next((set_name for set_name, members in SETS.items() if names <= set(members.values())), None)

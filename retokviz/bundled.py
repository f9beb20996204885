"""The checkpoints bundled in data/, by role: one place that says which file is the baseline, which was trained
with EViT, and so on, for the evaluation, the notebooks, the explorer and the tests.

    rv.bundled.name("EViT")                    # 'showcase-evit-0.7'
    rv.bundled.name("none", "small")           # 'small-baseline'
    rv.bundled.checkpoints("showcase")         # {'none': 'showcase-baseline', 'EViT': ..., ...}
    rv.load_checkpoint(rv.bundled.name("ImagePiece"))

Two sets of four models, each trained on the generated clutter data and differing only in the reduction method:
- "showcase": 6 blocks on a 12 x 12 grid (192 px), EViT and ImagePiece reducing at blocks 1, 3 and 4 (about a
  quarter, half and three quarters of the depth, as in DeiT-S); the models the README's tables, the explorer and
  notebooks 00 and 02 use;
- "small": 4 blocks on an 8 x 8 grid (128 px), about half the compute; the unit tests and notebooks 01 and 03-06
  use them for speed. Its ToMe model was trained with the spatial-order variant of ToMe
  (`ToMe(order="spatial")`), as it records.
"""
from __future__ import annotations

SETS: dict[str, dict[str, str]] = {   # set -> method (as people write it; "none": no reduction) -> checkpoint
    "showcase": {"none": "showcase-baseline", "EViT": "showcase-evit-0.7",
                 "ImagePiece": "showcase-imagepiece-0.7-stem", "ToMe": "showcase-tome"},
    "small": {"none": "small-baseline", "EViT": "small-evit-0.7",
              "ImagePiece": "small-imagepiece-0.7-stem", "ToMe": "small-tome-spatial"},
}
DEFAULT_SET = "showcase"


def checkpoints(set_name: str = DEFAULT_SET) -> dict[str, str]:
    """A set's checkpoint names by method ("none", "EViT", "ImagePiece", "ToMe").

    Raises:
        ValueError: an unknown set; the message lists the valid ones.
    """
    if set_name not in SETS:
        raise ValueError(f"unknown checkpoint set {set_name!r}; valid: {', '.join(SETS)}")
    return dict(SETS[set_name])


def name(method: str = "none", set_name: str = DEFAULT_SET) -> str:
    """The bundled checkpoint trained with `method` ("none", "EViT", "ImagePiece" or "ToMe", any case) in a set.

    Raises:
        ValueError: an unknown set or method; the message lists the valid ones.
    """
    by_lower = {key.lower(): value for key, value in checkpoints(set_name).items()}
    if method.lower() not in by_lower:
        raise ValueError(f"no bundled checkpoint for method {method!r}; valid: {', '.join(SETS[set_name])}")
    return by_lower[method.lower()]

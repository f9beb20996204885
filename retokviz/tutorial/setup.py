"""The first cell of every tutorial notebook: the device, the versions, and whether this is a quick run.

    settings = rv.notebook.setup()          # prints one line each; quick when CI or RETOKVIZ_QUICK=1 is set
    n = settings.pick(quick=200, full=2000)

Quick mode shrinks data, epochs and sweeps so that every notebook runs top to bottom in a minute or two on a 2-core
CPU (the test suite runs them so); full mode trains and sweeps the full configurations, on a GPU where there is one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import timm
import torch

from retokviz._util import VERSION
from retokviz._util.device import describe_device
from retokviz._util.env import env_flag

T = TypeVar("T")

QUICK_VARIABLES = ("RETOKVIZ_QUICK", "CI")


def quick_mode() -> bool:
    """True when RETOKVIZ_QUICK or CI says yes (1, true, yes, on); unset or 0, false, no, off say no.

    Raises:
        ValueError: a value that is neither (see retokviz._util.env.env_flag).
    """
    return any(env_flag(name) for name in QUICK_VARIABLES)


@dataclass(frozen=True)
class Settings:
    """What a notebook runs with.

    Attributes:
        quick: quick mode (less data, fewer epochs, smaller sweeps).
        device: "cuda" where a GPU is present, else "cpu".
    """

    quick: bool
    device: str

    def pick(self, quick: T, full: T) -> T:
        """`quick` in quick mode, else `full`."""
        return quick if self.quick else full


def setup(verbose: bool = True) -> Settings:
    """Decide the device and the mode, and print them with the versions (one line each)."""
    settings = Settings(quick=quick_mode(), device="cuda" if torch.cuda.is_available() else "cpu")
    if verbose:
        mode = "quick (RETOKVIZ_QUICK or CI is set)" if settings.quick else "full"
        print(f"device:   {describe_device(torch.device(settings.device))}")
        print(f"versions: retokviz {VERSION}, torch {torch.__version__}, timm {timm.__version__}")
        print(f"mode:     {mode}")
    return settings

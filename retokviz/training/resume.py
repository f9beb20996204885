"""A run that can stop at any time: the RNG states saved and restored, the run folder checked, last.pt read back
and compared with the run asked for, so a resumed run computes exactly what an uninterrupted one would."""
from __future__ import annotations

import os
import pickle
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retokviz.methods.registry import method_spec
from retokviz.methods.base import Methods
from retokviz._util.files import check_writable_folder
from retokviz.training.config import RUNTIME_FIELDS, TrainConfig


# What last.pt holds; a file without these is not a training state.
STATE_KEYS = frozenset({"epoch", "step", "model", "optimizer", "config", "method", "history", "rng"})


# ----------------------------------------------------------------------------------------------- RNG states

def rng_state(loader_generator: torch.Generator) -> dict[str, Any]:
    """This process's random states, as plain data that torch.load(weights_only=True) reads back."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,   # this rank's device
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": random.getstate(),
        "loader": loader_generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])
    loader_generator.set_state(state["loader"])


def seed_everything(seed: int, loader_generator: torch.Generator) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    loader_generator.manual_seed(seed)


# ------------------------------------------------------------------------------------ the run folder, resume

class _NotRecorded:
    """Stands for a field that one of two compared records lacks."""

    def __repr__(self) -> str:
        return "<not recorded>"


_NOT_RECORDED = _NotRecorded()


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """"name: saved -> current" for every key whose value differs between two records (or that one lacks)."""
    keys = dict.fromkeys([*current, *saved])
    return [f"{key}: {saved.get(key, _NOT_RECORDED)!r} -> {current.get(key, _NOT_RECORDED)!r}"
            for key in keys if saved.get(key, _NOT_RECORDED) != current.get(key, _NOT_RECORDED)]


def _read_state(path: Path) -> dict[str, Any]:
    """last.pt's content, with errors that name the file and say what to do."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError, ValueError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"{path} is corrupt or truncated ({type(error).__name__}: {reason}), so the run can't be "
                         f"resumed from it; delete it and {path.parent / 'metrics.jsonl'} to train the run from the "
                         "start, or train into another out_dir (--out)") from error
    if not (isinstance(state, dict) and STATE_KEYS <= state.keys()):
        raise ValueError(f"{path} is not a training state written by rv.train (it lacks "
                         f"{sorted(STATE_KEYS - set(state) if isinstance(state, dict) else STATE_KEYS)}); "
                         "train into another out_dir (--out)")
    return state


def load_training_state(path: str | os.PathLike, config: TrainConfig, method: Methods | None,
                        settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's last.pt, checked to continue the same run: the same TrainConfig (but RUNTIME_FIELDS), method and
    settings.

    Raises:
        FileNotFoundError: there is no `path`.
        ValueError: `path` is corrupt, or not a training state, or resuming would change the run (the message names
            every field that differs, as "name: recorded -> asked for").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"there is no {path} to resume from; start the run without resume=True (--resume)")
    state = _read_state(path)
    saved = {key: value for key, value in state["config"].items() if key not in RUNTIME_FIELDS}
    current = {key: value for key, value in asdict(config).items() if key not in RUNTIME_FIELDS}
    changed = _differences(saved, current)
    changed += _differences({"method": state["method"]}, {"method": method_spec(method)})
    changed += _differences(state.get("settings") or {}, settings or {})
    if changed:
        raise ValueError(f"{path} is from a different run; resuming would change {'; '.join(changed)}. Resume with "
                         "the same settings, or train into a new out_dir")
    return state


def check_run_folder(config: TrainConfig, method: Methods | None = None, *, resume: bool = False,
                     settings: dict[str, Any] | None = None) -> int:
    """Raise now what `train` would raise about config.out_dir, so that a caller can fail before building data.

    Returns:
        the epochs the run has done: 0 for a new run, those recorded in last.pt when resuming.

    Raises:
        ValueError: resume without out_dir; a last.pt that is corrupt or from a different run.
        FileExistsError: out_dir holds a run and resume is False.
        FileNotFoundError: resume is True and out_dir holds no last.pt.
        NotADirectoryError, PermissionError: out_dir can't be written.
    """
    last = checkpoint_path(config, resume)
    return load_training_state(last, config, method, settings)["epoch"] if resume else 0


def checkpoint_path(config: TrainConfig, resume: bool) -> Path | None:
    """config.out_dir/last.pt (None without out_dir), checked to be writable and to agree with `resume`."""
    if config.out_dir is None:
        if resume:
            raise ValueError("resume=True needs TrainConfig.out_dir, the folder of the run to continue")
        return None
    check_writable_folder(config.out_dir, "TrainConfig.out_dir")
    last = Path(config.out_dir) / "last.pt"
    if resume and not last.is_file():
        raise FileNotFoundError(f"there is no {last} to resume from; start the run without resume=True (--resume)")
    if not resume and last.exists():
        raise FileExistsError(f"{last} holds an earlier run; pass resume=True (--resume) to continue it, or train "
                              "into another out_dir")
    return last

"""The device: resolved once from what a user writes ("auto", "cpu", "cuda", "cuda:N", "mps"), and described in
words for the conditions printed beside every measurement."""
from __future__ import annotations

import platform

import torch

ACCEPTED = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(request: object, local_rank: int = 0) -> torch.device:
    """The device `request` names, checked to be present here: "auto" -> cuda where a GPU is, else cpu; a bare
    "cuda" -> cuda:local_rank (one process per GPU).

    Raises:
        ValueError: a device type other than the accepted ones, or one this machine (or this torch build) lacks;
            the message names the value and what is accepted.
    """
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(request, torch.device):
        request = str(request)
    if not isinstance(request, str):
        raise ValueError(f"device must be {ACCEPTED}, got {request!r}")
    try:
        device = torch.device(request)
    except RuntimeError:
        raise ValueError(f"device must be {ACCEPTED}, got {request!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {request!r}: this torch ({torch.__version__}) finds no CUDA GPU on this "
                             "machine; use device 'cpu' or 'auto'")
        device = torch.device("cuda", local_rank) if device.index is None else device
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ValueError(f"device {request!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {request!r}: MPS is not available here; use device 'cpu' or 'auto'")
    elif device.type != "cpu":
        raise ValueError(f"device must be {ACCEPTED}, got {request!r}")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (before a clock is read)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def describe_device(device: torch.device | str) -> str:
    """The device in words: the GPU's name, or the CPU's model and the threads torch uses."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return device.type
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"cpu: {name}, {threads} thread{'s' if threads != 1 else ''}"

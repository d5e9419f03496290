"""Devices from the config, checked against this machine (torch only: training and evaluation import it without
transformers, and their code digests stay independent of the model-loading code)."""

from __future__ import annotations

import torch


class ModelLoadError(ValueError):
    """A checkpoint (or a device) that cannot be used as asked; the message names the path or config key."""


def check_device(device: str, key: str = "models.<name>.device") -> torch.device:
    """``device`` as a torch device this machine has; a clear error naming ``key`` otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ModelLoadError(f"{key}: {device!r} is not a device ({err})") from err
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ModelLoadError(f"{key}: {device!r}: only cpu, cuda and cuda:N are supported")
    count = torch.cuda.device_count()
    if count == 0:
        raise ModelLoadError(
            f"{key}: {device!r} asked for, but this machine has no usable CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use device: cpu or a CUDA build"
        )
    index = 0 if dev.index is None else dev.index
    if index >= count:
        raise ModelLoadError(f"{key}: {device!r} asked for, but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")
    return torch.device("cuda", index)

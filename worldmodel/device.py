"""Where the model runs: one place that turns `--device {auto,cpu,cuda}` into a torch.device.

    from worldmodel.device import resolve_device, autocast
    device = resolve_device("auto")          # cuda when torch sees a GPU, else cpu
    with autocast(device):                   # bf16 autocast on CUDA; a no-op on the CPU (stays fp32)
        ...

`cuda` on a machine without one is a `DeviceError` (a ValueError, so the command-line tools print it as one
line). "cuda:1" picks a GPU; under torchrun each rank takes cuda:LOCAL_RANK (worldmodel.train).
"""

from __future__ import annotations

import contextlib
import time

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device that was asked for and is not there (or not a device name)."""


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> cuda when torch.cuda.is_available() else cpu; 'cpu'; 'cuda' / 'cuda:N' (DeviceError
    naming why when this machine has no such GPU)."""
    if isinstance(name, torch.device):
        name = str(name)
    name = "auto" if name is None else str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support (torch " + torch.__version__ + ")" if torch.version.cuda is None
                   else "torch sees no CUDA device (driver missing, or CUDA_VISIBLE_DEVICES hides it)")
            raise DeviceError(f"device {name!r} was asked for but CUDA is not available: {why}; use --device cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r} was asked for but this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")


def default_amp(device: torch.device) -> bool:
    """Mixed precision by default: bf16 autocast on CUDA; the CPU path stays fp32."""
    return device.type == "cuda"


def autocast(device: torch.device, enabled: bool | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast for `device` (enabled=None: `default_amp(device)`); a null context when off."""
    on = default_amp(device) if enabled is None else enabled
    if not on:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings on CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak_gflops(dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    """Best-of-`reps` GFLOP/s of an n x n x n GEMM at the current thread count."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9

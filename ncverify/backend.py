"""Array namespace and device selection.

A `Backend` names an array namespace (through array-api-compat), a device and a dtype.
numpy on the CPU in float64 is the default.  A requested package or device that is absent is a
`BackendError` (one sentence), never a silent fallback to the CPU.

>>> be = Backend.create("numpy")
>>> be.name, be.device_name, be.dtype_name
('numpy', 'cpu', 'float64')
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

BACKENDS: tuple[str, ...] = ("numpy", "array-api-strict", "torch", "cupy", "jax")
DTYPES: tuple[str, ...] = ("float64", "float32")


class BackendError(ValueError):
    """A backend, device or dtype that cannot be provided here; the message is one sentence."""


@dataclass(frozen=True)
class Backend:
    """An array namespace `xp`, a device and a floating dtype."""

    name: str
    xp: Any
    device: Any
    dtype: Any
    device_name: str
    dtype_name: str

    @property
    def eps(self) -> float:
        """Unit roundoff of the dtype: every numerical tolerance is a multiple of it."""
        return float(np.finfo(self.dtype_name).eps)

    @classmethod
    def create(
        cls, name: str = "numpy", device: str | None = None, dtype: str = "float64"
    ) -> Backend:
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}.")
        if dtype not in DTYPES:
            raise BackendError(f"unknown dtype {dtype!r}; choose float64 or float32.")
        return _CREATORS[name](device, dtype)

    def asarray(self, a: Any) -> Any:
        return self.xp.asarray(a, dtype=self.dtype, device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Copy to a host numpy array (for reports and saved counterexamples only)."""
        return to_host(a)

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "device": self.device_name, "dtype": self.dtype_name}


def to_host(a: Any) -> np.ndarray:
    """Any backend's array copied to a host numpy array: the one place that knows how (torch
    through `.cpu()`, cupy through `.get()`, array-api-strict's virtual devices through the CPU
    device, anything else through DLPack or `np.asarray`)."""
    if isinstance(a, np.ndarray):
        return a
    module = type(a).__module__
    if hasattr(a, "detach"):  # torch
        return a.detach().cpu().numpy()
    if module.startswith("cupy"):
        return a.get()
    if module.startswith("array_api_strict"):
        import array_api_strict

        return np.from_dlpack(a.to_device(array_api_strict.Device("CPU_DEVICE")))
    try:
        return np.from_dlpack(a)
    except Exception:  # noqa: BLE001 - anything else that numpy can read
        return np.asarray(a)


def _require(module: str, backend: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendError(
            f"backend {backend!r} needs the package {module!r}, which is not installed."
        ) from None


def _numpy(device: str | None, dtype: str) -> Backend:
    if device not in (None, "cpu"):
        raise BackendError(f"the numpy backend runs on the CPU only, not on device {device!r}.")
    from array_api_compat import numpy as xp

    return Backend("numpy", xp, "cpu", getattr(xp, dtype), "cpu", dtype)


def _strict(device: str | None, dtype: str) -> Backend:
    """array-api-strict; by default on its virtual `device1`, which numpy cannot read, so that
    any hidden conversion to numpy inside the pipeline is an error instead of passing silently."""
    xp = _require("array_api_strict", "array-api-strict")
    devices = {
        "cpu": xp.Device("CPU_DEVICE"),
        "device1": xp.Device("device1"),
        "device2": xp.Device("device2"),
    }
    name = device or "device1"
    if name not in devices:
        raise BackendError(
            f"array-api-strict has no device {name!r}; use device1 (default), device2 or cpu."
        )
    return Backend("array-api-strict", xp, devices[name], getattr(xp, dtype), name, dtype)


def _torch(device: str | None, dtype: str) -> Backend:
    torch = _require("torch", "torch")
    from array_api_compat import torch as xp

    name = device or "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"device {name!r} was requested but no CUDA device is available.")
    if not (name == "cpu" or name.startswith("cuda") or name == "mps"):
        raise BackendError(f"unknown torch device {name!r}; use cpu or cuda.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise BackendError("device 'mps' was requested but is not available.")
    if name == "cpu":
        # the iterations are chains of small products: torch's intra-op thread pool spins and
        # contends (measured 60x slower on 2 cores than one thread), as OpenBLAS did for numpy
        torch.set_num_threads(1)
    return Backend("torch", xp, torch.device(name), getattr(torch, dtype), name, dtype)


def _cupy(device: str | None, dtype: str) -> Backend:
    cp = _require("cupy", "cupy")
    from array_api_compat import cupy as xp

    name = device or "cuda"
    if not name.startswith("cuda"):
        raise BackendError(f"cupy runs on CUDA devices only, not on {name!r}.")
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - any CUDA failure means no device
        n = 0
    if n == 0:
        raise BackendError(f"device {name!r} was requested but no CUDA device is available.")
    index = int(name.split(":")[1]) if ":" in name else 0
    return Backend("cupy", xp, cp.cuda.Device(index), getattr(cp, dtype), name, dtype)


def _jax(device: str | None, dtype: str) -> Backend:
    jax = _require("jax", "jax")
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as xp

    name = device or "cpu"
    platform = "gpu" if name.startswith("cuda") else name
    try:
        devs = jax.devices(platform)
    except RuntimeError:
        raise BackendError(f"device {name!r} was requested but jax has none.") from None
    return Backend("jax", xp, devs[0], getattr(xp, dtype), name, dtype)


_CREATORS = {
    "numpy": _numpy,
    "array-api-strict": _strict,
    "torch": _torch,
    "cupy": _cupy,
    "jax": _jax,
}

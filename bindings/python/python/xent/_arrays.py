"""Anything array-like as a NumPy array, without a copy where one is not needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import XentInputError


def as_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a NumPy array: an ndarray as it is; an object with ``__dlpack__`` (a CPU
    PyTorch or JAX tensor) through ``numpy.from_dlpack`` (no copy); one that cannot export
    to the host that way (a CUDA tensor) copied to the host with ``.cpu()``; anything else
    through ``numpy.asarray``."""
    if isinstance(x, np.ndarray):
        return x
    if x is None:
        raise XentInputError(f"{name}: expected an array, got None")
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (BufferError, RuntimeError, TypeError, ValueError):
            if hasattr(x, "detach") and hasattr(x, "cpu"):
                # a PyTorch tensor on a device, or one that requires grad: copied to the host
                return np.asarray(x.detach().cpu())
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001 - any conversion failure is the caller's input
        raise XentInputError(f"{name}: cannot be read as an array ({e})") from e


def rows_of(x: np.ndarray, name: str, dim: int = -1) -> tuple[np.ndarray, tuple[int, ...]]:
    """``x`` as 2-D ``[rows, x.shape[dim]]`` with ``dim`` last: a view where ``dim`` is the
    last axis, else a copy with the axis moved. Returns the array and the shape of the
    other axes (where per-row results go)."""
    if x.ndim == 0:
        raise XentInputError(f"{name}: expected at least 1 dimension, got a scalar")
    try:
        axis = dim % x.ndim if -x.ndim <= dim < x.ndim else None
    except TypeError:
        axis = None
    if axis is None:
        raise XentInputError(f"{name}: dim {dim} is out of range for {x.ndim} dimensions")
    if axis != x.ndim - 1:
        x = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    lead = x.shape[:-1]
    if x.ndim == 2:
        return x, lead
    return x.reshape(-1, x.shape[-1]), lead

"""xent: loss kernels on the GPU (WGSL on wgpu, checked against an f64 reference), for
NumPy arrays and ``.npy`` files: PyTorch's loss functions by name, and a one-pass
evaluation report (loss, top-k accuracy, calibration, Brier score, per-class recall) that
merges exactly across shards.

>>> import numpy as np, xent
>>> logits = np.random.default_rng(0).standard_normal((1000, 10), dtype=np.float32)
>>> labels = np.arange(1000) % 10
>>> loss = xent.cross_entropy(logits, labels)
>>> report = xent.evaluate(logits, labels)
"""

from __future__ import annotations

from typing import Any

from ._context import default_context
from ._errors import XentDeviceError, XentError, XentInputError, XentMemoryError
from ._xent import Context, __version__
from ._xent import adapters as _adapters
from .functional import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    distillation_loss,
    entropy,
    gaussian_kl,
    jsd,
    kl_div,
    linear_cross_entropy,
    log_softmax,
    logsumexp,
    softmax,
)
from .report import Report, evaluate, evaluate_files, merge

__all__ = [
    "Context",
    "Report",
    "XentDeviceError",
    "XentError",
    "XentInputError",
    "XentMemoryError",
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "default_context",
    "distillation_loss",
    "entropy",
    "evaluate",
    "evaluate_files",
    "gaussian_kl",
    "info",
    "jsd",
    "kl_div",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "merge",
    "softmax",
]


def info() -> dict[str, Any]:
    """The package's version, the adapters wgpu finds, and the default context's device."""
    ctx = default_context()
    return {
        "version": __version__,
        "adapters": [{"name": n, "backend": b, "device_type": t} for n, b, t in _adapters()],
        "default": ctx.info(),
    }

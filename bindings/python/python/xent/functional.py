"""The loss functions on arrays, with PyTorch's names, argument order and defaults where
PyTorch has the function (``torch.nn.functional``). Inputs are NumPy arrays or anything
with ``__dlpack__``/``__array__``; results are Python floats (reduced) or float32 arrays.

Every function takes ``context=``: an :class:`xent.Context`, a device name, or ``None`` for
the process's default context.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np

from . import _xent
from ._arrays import as_array, rows_of
from ._context import resolve
from ._errors import XentInputError

Reduction = Literal["mean", "sum", "none"]
ArrayLike = Any

__all__ = [
    "cross_entropy",
    "log_softmax",
    "softmax",
    "logsumexp",
    "kl_div",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "entropy",
    "jsd",
    "gaussian_kl",
    "distillation_loss",
    "linear_cross_entropy",
]

_NAMES = ("input", "target", "target", "weight")


def _same_shape(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise XentInputError(f"{b_name}: shape {b.shape} does not match {a_name} {a.shape}")


def _check_reduction(reduction: str, allowed: tuple[str, ...] = ("mean", "sum", "none")) -> None:
    if reduction not in allowed:
        raise XentInputError(f"reduction: {reduction!r} is not one of {', '.join(map(repr, allowed))}")


def _base(base: Any) -> str:
    if base in (None, "e", np.e):
        return "e"
    if base in (2, "2", 2.0):
        return "2"
    raise XentInputError(f"base: {base!r} is not e (None) or 2")


def _run(op: str, options: dict, a, b=None, labels=None, weights=None, *, names=_NAMES, context=None, **kw):
    return _xent.run(resolve(context), op, options, a, b, labels, weights, names=names, **kw)


def _grad(return_grad: bool, reduction: str, mean_scale: Optional[float]) -> dict:
    """The gradient arguments of a run: of the sum, or of the mean (over the forward's
    denominator where ``mean_scale`` is None, else scaled by it)."""
    if not return_grad:
        return {}
    if reduction != "mean":
        return {"grad_scale": 1.0}
    if mean_scale is None:
        return {"grad_scale": 1.0, "grad_mean": True}
    return {"grad_scale": mean_scale}


def _with_grad(value, out: dict, return_grad: bool, like):
    if not return_grad:
        return value
    g = out["grad"]
    shape = np.shape(like) if hasattr(like, "shape") else g.shape
    return value, g.reshape(shape)


def _reduce(out: dict, reduction: str, lead: tuple[int, ...], denominator: Optional[float] = None):
    if reduction == "none":
        return out["values"].reshape(lead)
    if reduction == "sum":
        return float(out["sum"])
    with np.errstate(invalid="ignore", divide="ignore"):
        # every row ignored: 0 / 0 is NaN, as in PyTorch
        return float(np.float64(out["sum"]) / (out["denominator"] if denominator is None else denominator))


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    weight: Optional[ArrayLike] = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: Optional[float] = None,
    return_grad: bool = False,
    context=None,
):
    """``torch.nn.functional.cross_entropy`` over ``input`` ``[N, C]`` (or ``[C]``, one
    sample): ``logsumexp(x) - x[target]`` a row, with class ``weight``, ``ignore_index``,
    ``label_smoothing``, and PaLM's ``z_loss`` (``z_loss * logsumexp(x)**2`` added to each
    row not ignored). A float ``target`` of ``input``'s shape is class probabilities (then
    ``weight`` and ``label_smoothing`` are folded into a copy of it, as PyTorch defines
    them). ``softcap=c`` reads the logits as ``c * tanh(x / c)``. The mean with weights
    divides by the sum of the weights of the rows not ignored; with every row ignored it
    is NaN, as in PyTorch. ``return_grad=True`` returns ``(loss, grad)``: the gradient of
    the loss (of the sum of the rows with ``reduction="none"``) with respect to ``input``,
    float32, written by the kernel in its pass."""
    _check_reduction(reduction)
    x = as_array(input, "input")
    t = as_array(target, "target")
    single = x.ndim == 1
    if single:
        x = x.reshape(1, -1)
        t = t.reshape(1, -1) if t.dtype.kind == "f" else t.reshape(1)
    if x.ndim != 2:
        raise XentInputError(f"input: expected [N, C] or [C], got shape {x.shape}")
    w = None if weight is None else as_array(weight, "weight")
    if t.dtype.kind == "f":
        if t.shape != x.shape:
            raise XentInputError(f"target: probabilities must have input's shape {x.shape}, got {t.shape}")
        if w is not None or label_smoothing:
            if not 0.0 <= label_smoothing <= 1.0:
                raise XentInputError(f"label_smoothing: {label_smoothing} is not in [0, 1]")
            k = x.shape[1]
            t = ((1.0 - label_smoothing) * t.astype(np.float32) + label_smoothing / k).astype(np.float32)
            if w is not None:
                if w.shape != (k,):
                    raise XentInputError(f"weight: expected shape ({k},), one entry per class, got {w.shape}")
                t = t * w.astype(np.float32)
        if t.dtype != x.dtype:
            t = t.astype(np.float32) if t.dtype not in (np.float32, np.float16) else t
        out = _run("ce-probs", {"z_loss": z_loss}, x, t, softcap=softcap, keep_values=reduction == "none",
                   context=context, **_grad(return_grad, reduction, 1.0 / x.shape[0]))
        lead: tuple[int, ...] = () if single else (x.shape[0],)
        return _with_grad(_reduce(out, reduction, lead, denominator=float(x.shape[0])), out, return_grad, input)
    if t.ndim != 1:
        raise XentInputError(f"target: class labels must be 1-D [N], got shape {t.shape}")
    options = {"ignore_index": int(ignore_index), "label_smoothing": float(label_smoothing), "z_loss": float(z_loss)}
    out = _run("ce", options, x, None, t, w, softcap=softcap, keep_values=reduction == "none", context=context,
               **_grad(return_grad, reduction, None))
    return _with_grad(_reduce(out, reduction, () if single else (x.shape[0],)), out, return_grad, input)


def _softmax(input, dim, temperature, softcap, log, context):
    x = as_array(input, "input")
    shape = x.shape
    moved = x.ndim > 0 and dim % max(x.ndim, 1) != x.ndim - 1
    rows, lead = rows_of(x, "input", dim)
    out = _run("softmax", {"temperature": float(temperature), "log": log}, rows, softcap=softcap, context=context)
    y = out["values"].reshape(lead + (rows.shape[1],))
    if moved:
        y = np.moveaxis(y, -1, dim)
    return y.reshape(shape)


def softmax(input: ArrayLike, dim: int = -1, *, temperature: float = 1.0, softcap: Optional[float] = None,
            context=None) -> np.ndarray:
    """``softmax(x / temperature)`` along ``dim`` (float32)."""
    return _softmax(input, dim, temperature, softcap, False, context)


def log_softmax(input: ArrayLike, dim: int = -1, *, temperature: float = 1.0, softcap: Optional[float] = None,
                context=None) -> np.ndarray:
    """``log_softmax(x / temperature)`` along ``dim`` (float32)."""
    return _softmax(input, dim, temperature, softcap, True, context)


def logsumexp(input: ArrayLike, dim: int = -1, keepdim: bool = False, *, softcap: Optional[float] = None,
              context=None) -> np.ndarray:
    """``log(sum(exp(x)))`` along ``dim`` (float32; ``-inf`` entries are masked classes)."""
    x = as_array(input, "input")
    rows, lead = rows_of(x, "input", dim)
    out = _run("lse", {}, rows, softcap=softcap, keep_values=True, context=context)
    y = out["values"].reshape(lead)
    if keepdim:
        y = np.expand_dims(y, dim)
    return y


def kl_div(input: ArrayLike, target: ArrayLike, reduction: str = "mean", log_target: bool = False, *,
           return_grad: bool = False, context=None):
    """``torch.nn.functional.kl_div``: ``KL(target || Q)`` where ``input`` holds ``log Q``
    (log-probabilities, each row normalised) and ``target`` the probabilities P (their logs
    with ``log_target=True``). ``reduction``: ``"batchmean"`` (the mathematically correct
    mean over rows), ``"mean"`` (PyTorch's: over every element), ``"sum"``, or ``"none"``
    (PyTorch's elementwise terms ``xlogy(P, P) - P·input``, or ``exp(t)·(t - input)`` with
    ``log_target``, in float32 and the input's shape: NumPy's elementwise arithmetic, as
    there is nothing to reduce). ``return_grad=True`` returns ``(loss, grad)``: the gradient
    with respect to ``input`` read as logits, through its softmax (``q·sum(P) - P`` per
    row, scaled by the reduction): what PyTorch gives for ``kl_div(log_softmax(z), P)``
    with respect to ``z``; not with ``reduction="none"``."""
    _check_reduction(reduction, ("mean", "batchmean", "sum", "none"))
    q = as_array(input, "input")
    p = as_array(target, "target")
    _same_shape(q, p, "input", "target")
    if reduction == "none":
        if return_grad:
            raise XentInputError("return_grad: reduction 'none' has no single loss to differentiate")
        return _kl_terms(q, p, log_target)
    qr, lead = rows_of(q, "input")
    pr, _ = rows_of(p, "target")
    options = {"p": "logits" if log_target else "probs", "q": "logits"}
    scale = {"batchmean": 1.0 / max(qr.shape[0], 1), "mean": 1.0 / max(q.size, 1), "sum": 1.0}[reduction]
    grad = {"grad_scale": scale} if return_grad else {}
    out = _run("kl", options, pr, qr, names=("target", "input", "", ""), context=context, **grad)
    if reduction == "batchmean":
        value = float(out["sum"] / qr.shape[0])
    else:
        value = _reduce(out, reduction, lead, denominator=float(q.size))
    return _with_grad(value, out, return_grad, q)


def _kl_terms(q: np.ndarray, p: np.ndarray, log_target: bool) -> np.ndarray:
    """PyTorch's pointwise KL terms, in float32: ``xlogy(p, p) - p * q`` (0 where p is 0,
    NaN where p is NaN or negative, as ``torch.xlogy``), or ``exp(p) * (p - q)`` for log P."""
    q32, p32 = q.astype(np.float32, copy=False), p.astype(np.float32, copy=False)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if log_target:
            return np.exp(p32) * (p32 - q32)
        return np.where(p32 == 0, np.float32(0), p32 * np.log(p32)) - p32 * q32


def _binary(op_input: str, input, target, weight, reduction, pos_weight, context, return_grad=False):
    _check_reduction(reduction)
    x = as_array(input, "input")
    t = as_array(target, "target")
    if t.shape != x.shape:
        raise XentInputError(f"target: shape {t.shape} does not match input {x.shape}")
    if t.dtype != x.dtype:
        t = t.astype(np.float32) if t.dtype not in (np.float32, np.float16) else t
    if return_grad and weight is not None:
        raise XentInputError("return_grad: not with weight; scale the gradient by weight yourself")
    if pos_weight is not None:
        if return_grad:
            raise XentInputError("return_grad: not with pos_weight")
        pos_weight = _pos_weight(pos_weight, x.shape)
    elementwise = reduction == "none" or weight is not None or pos_weight is not None
    # a row per element where each element's term is wanted; else rows of the last axis
    cols = 1 if elementwise or x.ndim < 2 else x.shape[-1]
    xr = x.reshape(-1, cols)
    tr = t.reshape(-1, cols)
    out = _run("bce", {"input": op_input}, xr, tr, keep_values=elementwise, context=context,
               **_grad(return_grad, reduction, 1.0 / max(x.size, 1)))
    if return_grad:
        value = _reduce(out, reduction, x.shape, denominator=float(x.size))
        return value, out["grad"].reshape(x.shape)
    if not elementwise:
        return _reduce(out, reduction, (), denominator=float(x.size))
    v = out["values"].reshape(x.shape)
    if pos_weight is not None:
        # PyTorch's (1 - t)·x + (1 + (w - 1)·t)·softplus(-x): the kernel's term plus (w - 1)·t·softplus(-x)
        x64 = x.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            v = (v + (pos_weight - 1.0) * t.astype(np.float64) * np.logaddexp(0.0, -x64)).astype(np.float32)
    if weight is not None:
        v = (v * as_array(weight, "weight")).astype(np.float32)
    if reduction == "none":
        return v
    s = float(np.sum(v, dtype=np.float64))
    return s if reduction == "sum" else s / x.size


def _pos_weight(pos_weight, shape) -> np.ndarray:
    """``pos_weight`` as float64, checked to broadcast to the input's ``shape`` (PyTorch's
    rule: a weight a class, along the last axis, or any shape that broadcasts)."""
    w = as_array(pos_weight, "pos_weight")
    try:
        if np.broadcast_shapes(w.shape, shape) != tuple(shape):
            raise ValueError
    except ValueError:
        raise XentInputError(f"pos_weight: shape {w.shape} does not broadcast to the input's {tuple(shape)}") from None
    return w.astype(np.float64)


def binary_cross_entropy(input: ArrayLike, target: ArrayLike, weight: Optional[ArrayLike] = None,
                         reduction: Reduction = "mean", *, context=None):
    """``torch.nn.functional.binary_cross_entropy``: probabilities ``input`` in [0, 1]
    against ``target`` in [0, 1], elementwise, logs clamped at -100 as PyTorch; the mean is
    over every element."""
    return _binary("probs", input, target, weight, reduction, None, context)


def binary_cross_entropy_with_logits(input: ArrayLike, target: ArrayLike, weight: Optional[ArrayLike] = None,
                                     reduction: Reduction = "mean", pos_weight: Optional[ArrayLike] = None, *,
                                     return_grad: bool = False, context=None):
    """``torch.nn.functional.binary_cross_entropy_with_logits`` in the stable form
    ``max(x, 0) - x*t + log1p(exp(-|x|))``; ``pos_weight`` (broadcast to the input, a
    weight a class along the last axis) weights the positive term as PyTorch's:
    ``(1 - t)*x + (1 + (pos_weight - 1)*t)*softplus(-x)``.
    ``return_grad=True`` returns ``(loss, grad)`` with the gradient of the loss (of the
    sum with ``reduction="none"``) with respect to ``input``."""
    return _binary("logits", input, target, weight, reduction, pos_weight, context, return_grad)


def entropy(input: ArrayLike, *, logits: bool = True, reduction: Reduction = "none", base=None,
            return_grad: bool = False, context=None):
    """The entropy ``-sum_j p_j log p_j`` of each row of ``input``: the softmax of logits
    (``logits=True``), or probabilities (as ``scipy.stats.entropy`` on rows that sum to 1).
    ``base=2`` gives bits. Per row by default. ``return_grad=True`` (logits only) returns
    ``(value, grad)``, the gradient with respect to the logits."""
    _check_reduction(reduction)
    x = as_array(input, "input")
    rows, lead = rows_of(x, "input")
    out = _run("entropy", {"p": "logits" if logits else "probs"}, rows, keep_values=reduction == "none",
               base=_base(base), context=context, **_grad(return_grad, reduction, 1.0 / max(rows.shape[0], 1)))
    return _with_grad(_reduce(out, reduction, lead), out, return_grad, x)


def jsd(input: ArrayLike, target: ArrayLike, beta: float = 0.5, reduction: Reduction = "mean", *,
        temperature: float = 1.0, log_input: bool = True, log_target: bool = True, base=None,
        return_grad: bool = False, context=None):
    """The generalised Jensen-Shannon divergence ``beta*KL(P||M) + (1-beta)*KL(Q||M)``,
    ``M = beta*P + (1-beta)*Q``, with P from ``target`` (the teacher) and Q from ``input``
    (the student), as Liger-Kernel's ``LigerJSD``: ``beta=0`` is ``KL(P||Q)``, ``beta=1``
    ``KL(Q||P)``. Inputs are logits or log-probabilities (``log_input``/``log_target``
    False: probabilities); logits are read as ``softmax(x / temperature)``. ``"mean"`` is
    over rows. ``return_grad=True`` (``log_input`` only) returns ``(loss, grad)``, the
    gradient with respect to ``input`` read as logits (through ``softmax(x / temperature)``),
    as Liger-Kernel's JSD writes it; with ``"none"`` the gradient of the sum."""
    _check_reduction(reduction)
    if return_grad and not log_input:
        raise XentInputError("return_grad: the gradient is of logits (log_input=True), not of probabilities")
    q = as_array(input, "input")
    p = as_array(target, "target")
    _same_shape(q, p, "input", "target")
    qr, lead = rows_of(q, "input")
    pr, _ = rows_of(p, "target")
    options = {"p": "logits" if log_target else "probs", "q": "logits" if log_input else "probs",
               "beta": float(beta), "temperature": float(temperature)}
    out = _run("jsd", options, pr, qr, names=("target", "input", "", ""), keep_values=reduction == "none",
               base=_base(base), context=context, **_grad(return_grad, reduction, 1.0 / max(qr.shape[0], 1)))
    return _with_grad(_reduce(out, reduction, lead), out, return_grad, q)


def gaussian_kl(mean: ArrayLike, logvar: ArrayLike, reduction: Reduction = "mean", *, context=None):
    """A VAE's ``KL(N(mean, exp(logvar)) || N(0, 1)) = -0.5 * sum_j (1 + logvar - mean**2 -
    exp(logvar))`` per row; ``"mean"`` is over rows."""
    _check_reduction(reduction)
    m = as_array(mean, "mean")
    v = as_array(logvar, "logvar")
    _same_shape(m, v, "mean", "logvar")
    mr, lead = rows_of(m, "mean")
    vr, _ = rows_of(v, "logvar")
    out = _run("gaussian-kl", {}, mr, vr, names=("mean", "logvar", "", ""), keep_values=reduction == "none",
               context=context)
    return _reduce(out, reduction, lead)


def distillation_loss(student: ArrayLike, teacher: ArrayLike, target: ArrayLike, *, temperature: float = 1.0,
                      alpha: float = 0.5, reduction: Reduction = "mean", return_grad: bool = False, context=None):
    """Hinton's distillation loss ``alpha * T**2 * KL(softmax(teacher/T) || softmax(student/T))
    + (1 - alpha) * cross_entropy(student, target)`` per row; ``"mean"`` is over rows.
    ``return_grad=True`` returns ``(loss, grad)``, the gradient with respect to ``student``."""
    _check_reduction(reduction)
    s = as_array(student, "student")
    t = as_array(teacher, "teacher")
    y = as_array(target, "target")
    options = {"temperature": float(temperature), "alpha": float(alpha)}
    out = _run("distill", options, s, t, y, names=("student", "teacher", "target", ""),
               keep_values=reduction == "none", context=context,
               **_grad(return_grad, reduction, 1.0 / max(s.shape[0], 1) if s.ndim else None))
    return _with_grad(_reduce(out, reduction, (s.shape[0],) if s.ndim == 2 else ()), out, return_grad, s)


def linear_cross_entropy(hidden: ArrayLike, weight: ArrayLike, target: ArrayLike, bias: Optional[ArrayLike] = None,
                         ignore_index: int = -100, reduction: Reduction = "mean", label_smoothing: float = 0.0, *,
                         z_loss: float = 0.0, softcap: Optional[float] = None, return_grad: bool = False,
                         context=None):
    """``cross_entropy(hidden @ weight.T + bias, target)`` without the ``[N, classes]``
    logits in memory (fused on the device, or a block of rows at a time on the CPU):
    ``hidden`` ``[N, d]``, ``weight`` ``[classes, d]`` (as ``torch.nn.Linear.weight``),
    ``bias`` ``[classes]``. ``return_grad=True`` returns ``(loss, (grad_hidden, grad_weight,
    grad_bias))``, the gradients of the mean (or the sum) in float32, ``grad_bias`` None
    without a bias; not with ``reduction="none"``."""
    _check_reduction(reduction)
    if return_grad and reduction == "none":
        raise XentInputError("return_grad: reduction 'none' has no single loss to differentiate; use 'mean' or 'sum'")
    options = {"ignore_index": int(ignore_index), "label_smoothing": float(label_smoothing), "z_loss": float(z_loss)}
    h = as_array(hidden, "hidden")
    w = as_array(weight, "weight")
    y = as_array(target, "target")
    b = None if bias is None else as_array(bias, "bias")
    total, counted, values, grads = _xent.linear_ce(resolve(context), h, w, y, b, options=options, softcap=softcap,
                                                    grad=return_grad)
    if reduction == "none":
        return values
    if reduction == "sum":
        loss = float(total)
    else:
        loss = float(total / counted) if counted else float("nan")
    if not return_grad:
        return loss
    if reduction == "sum":
        # the gradients come of the mean: the sum's are `counted` times them
        grads = tuple(None if g is None else g * np.float32(counted) for g in grads)
    return loss, tuple(grads)

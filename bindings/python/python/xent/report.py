"""The evaluation report: :func:`evaluate` on arrays, :func:`evaluate_files` on ``.npy``
files bigger than memory, and :func:`merge` of shards' reports (the same Rust code as
``xent merge``)."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from . import _xent
from ._arrays import as_array
from ._context import resolve
from ._errors import XentInputError

__all__ = ["Report", "evaluate", "evaluate_files", "merge"]


def _float(v: Any) -> float:
    # non-finite numbers travel as the strings "nan", "inf", "-inf"
    return float(v) if v is not None else float("nan")


class Report:
    """The result of an evaluation: a frozen object over the command line's JSON object
    (``to_dict()`` gives it with the same keys as ``xent ce --labels --json``).

    Metrics follow scikit-learn's meanings: ``loss`` is ``log_loss`` (the mean
    cross-entropy in nats, or bits with ``base=2``), ``top_k[k]`` is
    ``top_k_accuracy_score`` with that k (xent's default ks are 1 and 5; scikit-learn's
    default k is 2), ``brier`` the multiclass Brier score (the sum over classes, as
    ``brier_score_loss`` of a one-hot target summed over the classes), and
    ``balanced_accuracy`` ``balanced_accuracy_score``. ``ece`` and ``mce`` are the expected
    and maximum calibration errors of the top-1 confidence over ``bins`` equal-width bins
    (L1, as torchmetrics' ``MulticlassCalibrationError``)."""

    __slots__ = ("_d",)
    _d: dict

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(self, "_d", json.loads(json.dumps(dict(data))))

    @classmethod
    def _from_json(cls, text: str) -> "Report":
        r = cls.__new__(cls)
        object.__setattr__(r, "_d", json.loads(text))
        return r

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Report is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Report is frozen")

    def __reduce__(self):
        return (Report._from_json, (self.to_json(),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Report) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return (f"Report(rows={self.rows}, loss={self.loss:.6g}, accuracy={self.accuracy:.4f}, "
                f"top_k={self.top_k}, ece={self.ece:.4f}, device={self.device!r})")

    def to_dict(self) -> dict:
        """The JSON object of ``xent ce --labels --json``, as a new dict."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        """The JSON object as a string (what ``xent merge`` reads)."""
        return json.dumps(self._d, sort_keys=True)

    @property
    def rows(self) -> int:
        """Rows evaluated, ignored ones included."""
        return int(self._d["rows"])

    @property
    def counted(self) -> int:
        """Rows not ignored: the denominator of the accuracies."""
        return int(self._d["counted"])

    @property
    def classes(self) -> int:
        return int(self._d["cols"])

    @property
    def loss(self) -> float:
        """The mean cross-entropy (``sklearn.metrics.log_loss``)."""
        return _float(self._d["mean"])

    @property
    def perplexity(self) -> float:
        """``exp`` of the mean cross-entropy in nats."""
        return _float(self._d["perplexity"])

    @property
    def accuracy(self) -> float:
        """The share of rows whose label is the argmax (a NaN row counts as wrong)."""
        return _float(self._d["accuracy"])

    @property
    def top_k(self) -> dict[int, float]:
        """``{k: top-k accuracy}`` for each k asked for."""
        return {int(k): _float(self._d[f"top{k}"]) for k in self._d["top_correct"]}

    @property
    def ece(self) -> float:
        return _float(self._d["ece"])

    @property
    def mce(self) -> float:
        return _float(self._d["mce"])

    @property
    def brier(self) -> float:
        return _float(self._d["brier"])

    @property
    def balanced_accuracy(self) -> float:
        return _float(self._d.get("balanced_accuracy"))

    @property
    def calibration(self) -> list[dict]:
        """Per bin: ``count``, ``correct``, ``confidence_sum``, ``accuracy``, ``confidence``."""
        return [{k: (_float(v) if k in ("accuracy", "confidence", "confidence_sum") else v) for k, v in b.items()}
                for b in self._d["calibration"]["bins"]]

    @property
    def per_class(self) -> Optional[dict[str, np.ndarray]]:
        """Per class (with ``per_class=True``): ``support``, ``correct``, ``predicted``
        (int64) and ``predicted_confidence_sum`` (float64) arrays; else None."""
        p = self._d.get("per_class")
        if p is None:
            return None
        out = {k: np.asarray(p[k], dtype=np.int64) for k in ("support", "correct", "predicted")}
        out["predicted_confidence_sum"] = np.asarray([_float(v) for v in p["predicted_confidence_sum"]])
        return out

    @property
    def recall(self) -> Optional[np.ndarray]:
        """Per-class recall (NaN where a class has no rows), with ``per_class=True``."""
        p = self.per_class
        if p is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return p["correct"] / p["support"]

    @property
    def device(self) -> str:
        return str(self._d.get("device", ""))

    @property
    def adapter(self) -> str:
        return str(self._d.get("adapter", ""))

    @property
    def seconds(self) -> float:
        return _float(self._d.get("seconds"))


def _options(top_k, bins, per_class, ignore_index, label_smoothing, softcap, base) -> dict:
    if isinstance(top_k, int):
        top_k = (top_k,)
    try:
        ks = [int(k) for k in top_k]
    except (TypeError, ValueError) as e:
        raise XentInputError(f"top_k: expected ints, got {top_k!r}") from e
    if any(k < 1 for k in ks):
        raise XentInputError(f"top_k: {ks}: each k must be at least 1")
    if int(bins) < 1:
        raise XentInputError(f"bins: {bins} must be at least 1")
    base = "e" if base in (None, "e", np.e) else ("2" if base in (2, "2") else base)
    return dict(top_k=ks, bins=int(bins), per_class=bool(per_class),
                ignore_index=None if ignore_index is None else int(ignore_index),
                label_smoothing=float(label_smoothing), softcap=softcap, base=str(base))


def evaluate(logits: Any, labels: Any, *, top_k: Sequence[int] = (1, 5), bins: int = 15, per_class: bool = False,
             ignore_index: Optional[int] = -100, label_smoothing: float = 0.0, softcap: Optional[float] = None,
             base=None, chunk_rows: Optional[int] = None, progress: Optional[Callable[[int, int], Any]] = None,
             context=None) -> Report:
    """Cross-entropy of ``logits`` ``[N, C]`` against ``labels`` ``[N]`` and its evaluation
    report, in one pass. Rows are fed to the device a chunk at a time straight from the
    arrays (float64 is narrowed to float32 a chunk at a time); Ctrl-C stops between chunks."""
    opts = _options(top_k, bins, per_class, ignore_index, label_smoothing, softcap, base)
    x = as_array(logits, "logits")
    y = as_array(labels, "labels")
    text = _xent.evaluate(resolve(context), x, y, chunk_rows=chunk_rows, progress=progress, **opts)
    return Report._from_json(text)


def evaluate_files(logits_path: "os.PathLike[str] | str", labels_path: "os.PathLike[str] | str", *,
                   top_k: Sequence[int] = (1, 5), bins: int = 15, per_class: bool = False,
                   ignore_index: Optional[int] = -100, label_smoothing: float = 0.0, softcap: Optional[float] = None,
                   base=None, chunk_rows: Optional[int] = None, progress: Optional[Callable[[int, int], Any]] = None,
                   context=None) -> Report:
    """:func:`evaluate` over ``.npy`` files, streamed as ``xent ce --labels`` streams them:
    memory stays at a few chunks whatever the file size. ``progress(done_bytes,
    total_bytes)`` is called after each chunk (``tqdm``: ``lambda d, t: bar.update(...)``)."""
    opts = _options(top_k, bins, per_class, ignore_index, label_smoothing, softcap, base)
    text = _xent.evaluate_files(resolve(context), os.fspath(logits_path), os.fspath(labels_path),
                                chunk_rows=chunk_rows, progress=progress, **opts)
    return Report._from_json(text)


def merge(reports: Iterable["Report | Mapping[str, Any] | str"]) -> Report:
    """The report of a whole set from its shards' reports, in the order given: counts add,
    sums add in f64 in that order, and the means follow (the code of ``xent merge``).
    Items may be Reports, their ``to_dict()``, or JSON strings (``xent ce --json`` lines)."""
    texts = []
    for r in reports:
        if isinstance(r, Report):
            texts.append(r.to_json())
        elif isinstance(r, str):
            texts.append(r)
        elif isinstance(r, Mapping):
            texts.append(json.dumps(dict(r)))
        else:
            raise XentInputError(f"reports: expected Report, dict or JSON string, got {type(r).__name__}")
    if not texts:
        raise XentInputError("reports: nothing to merge")
    return Report._from_json(_xent.merge(texts))

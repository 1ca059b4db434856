# Stubs of the Rust module xent._xent (bindings/python/src). tests/test_stubs.py checks
# that every function here has the module's parameters, in order, with the same defaults.
from os import PathLike
from typing import Any, Callable, Optional

import numpy as np

__version__: str

class Context:
    def __init__(self, device: str = "auto") -> None: ...
    @property
    def device(self) -> str: ...
    @property
    def adapter(self) -> str: ...
    def info(self) -> dict[str, Any]: ...

def adapters() -> list[tuple[str, str, str]]: ...
def run(
    ctx: Context,
    op: str,
    options: dict[str, Any],
    a: np.ndarray,
    b: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    weights: Optional[np.ndarray] = None,
    *,
    names: tuple[str, str, str, str],
    softcap: Optional[float] = None,
    base: str = "e",
    keep_values: bool = False,
    keep_argmax: bool = False,
    keep_entropy: bool = False,
    grad_scale: Optional[float] = None,
    grad_mean: bool = False,
) -> dict[str, Any]: ...
def linear_ce(
    ctx: Context,
    hidden: np.ndarray,
    weight: np.ndarray,
    labels: np.ndarray,
    bias: Optional[np.ndarray] = None,
    *,
    options: dict[str, Any],
    softcap: Optional[float] = None,
    grad: bool = False,
) -> tuple[float, float, np.ndarray, Optional[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]]: ...
def evaluate(
    ctx: Context,
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    top_k: list[int],
    bins: int,
    per_class: bool,
    ignore_index: Optional[int],
    label_smoothing: float,
    softcap: Optional[float],
    base: str,
    chunk_rows: Optional[int] = None,
    progress: Optional[Callable[[int, int], Any]] = None,
) -> str: ...
def evaluate_files(
    ctx: Context,
    logits_path: str | PathLike[str],
    labels_path: str | PathLike[str],
    *,
    top_k: list[int],
    bins: int,
    per_class: bool,
    ignore_index: Optional[int],
    label_smoothing: float,
    softcap: Optional[float],
    base: str,
    chunk_rows: Optional[int] = None,
    progress: Optional[Callable[[int, int], Any]] = None,
) -> str: ...
def merge(results: list[str]) -> str: ...

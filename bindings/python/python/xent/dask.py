"""``xent.dask.evaluate``: shards of a prediction set evaluated on a Dask cluster, one task
per file pair, merged exactly.

Paths travel to the workers, not arrays: each worker streams its own files with
:func:`xent.evaluate_files` on its process's default context (opened once per worker
process), and the reports are merged in the order of the paths with :func:`xent.merge`,
so the result's bits depend on the sharding only, not on which task finished first.
Needs ``dask[distributed]`` (``pip install "xent-gpu[dask]"``).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from ._errors import XentInputError
from .report import Report, evaluate_files, merge

__all__ = ["evaluate"]


def _shard(logits_path: str, labels_path: str, device: str, options: dict) -> str:
    # on the worker: its process's context for the device asked for, opened once
    from ._context import resolve

    ctx = _worker_context(device, resolve)
    return evaluate_files(logits_path, labels_path, context=ctx, **options).to_json()


_contexts: dict = {}


def _worker_context(device: str, resolve):
    key = (os.getpid(), device)
    if key not in _contexts:
        _contexts[key] = resolve(device)
    return _contexts[key]


def evaluate(logits_paths: Sequence["os.PathLike[str] | str"], labels_paths: Sequence["os.PathLike[str] | str"], *,
             client: Optional[Any] = None, device: str = "auto", **options: Any) -> Report:
    """Evaluates each ``(logits_paths[i], labels_paths[i])`` pair of ``.npy`` files as a
    task on ``client`` (default: the current ``distributed`` client) and merges the
    reports in path order. ``options`` are :func:`xent.evaluate_files`'s (``top_k``,
    ``bins``, ``per_class``, ``ignore_index``, ...). An error in a shard is raised here,
    naming its file."""
    try:
        from distributed import get_client
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('xent.dask needs dask[distributed]: pip install "xent-gpu[dask]"') from e
    logits = [os.fspath(p) for p in logits_paths]
    labels = [os.fspath(p) for p in labels_paths]
    if len(logits) != len(labels):
        raise XentInputError(f"labels_paths: {len(labels)} paths for {len(logits)} logits paths")
    if not logits:
        raise XentInputError("logits_paths: no files")
    for bad in ("context", "progress"):
        if bad in options:
            raise XentInputError(f"{bad}: not taken by xent.dask.evaluate (each worker has its own)")
    client = client if client is not None else get_client()
    futures = [client.submit(_shard, a, b, device, options, pure=False) for a, b in zip(logits, labels)]
    texts = client.gather(futures)
    return merge(texts)

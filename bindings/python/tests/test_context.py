"""The default context: lazy, per process, never carried across fork; threads share a
context safely."""

from __future__ import annotations

import multiprocessing
import sys
import threading

import numpy as np
import pytest

import xent
from xent import _context


def _child_loss(q):
    before = _context._default
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    q.put((before is None, xent.cross_entropy(x, np.array([0, 1, 2]))))


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_default_context_is_not_carried_across_fork():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    want = xent.cross_entropy(x, np.array([0, 1, 2]))
    assert _context._default is not None
    mp = multiprocessing.get_context("fork")
    q = mp.Queue()
    p = mp.Process(target=_child_loss, args=(q,))
    p.start()
    fresh, got = q.get(timeout=120)
    p.join(60)
    assert p.exitcode == 0 and fresh and got == want


def test_threads_share_a_context(ctx, rng):
    x = rng.standard_normal((2000, 50), dtype=np.float32)
    y = rng.integers(0, 50, 2000)
    want = xent.cross_entropy(x, y, context=ctx)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(xent.cross_entropy(x, y, context=ctx))
                xent.evaluate(x, y, context=ctx, progress=lambda d, t: None)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [want] * 20


def _child_uses_parents(ctx, q):
    try:
        xent.cross_entropy(np.zeros((2, 2), np.float32), np.array([0, 1]), context=ctx)
        q.put("ran")
    except xent.XentDeviceError as e:
        q.put(str(e))


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_context_from_before_fork_is_refused_in_the_child():
    ctx = xent.Context("auto")
    xent.cross_entropy(np.zeros((2, 2), np.float32), np.array([0, 1]), context=ctx)
    mp = multiprocessing.get_context("fork")
    q = mp.Queue()
    p = mp.Process(target=_child_uses_parents, args=(ctx, q))
    p.start()
    assert "opened in another process" in q.get(timeout=120)
    p.join(60)
    assert p.exitcode == 0


def test_a_callback_that_calls_its_own_context_is_refused(ctx, rng):
    x = rng.standard_normal((100, 5), dtype=np.float32)
    y = rng.integers(0, 5, 100)
    seen = []

    def progress(done, total):
        seen.append(xent.cross_entropy(x, y, context="cpu"))  # another context: fine
        xent.cross_entropy(x, y, context=ctx)  # its own: refused, not a deadlock

    with pytest.raises(xent.XentInputError, match="busy with the job"):
        xent.evaluate(x, y, chunk_rows=10, progress=progress, context=ctx)
    assert len(seen) == 1
    assert xent.cross_entropy(x, y, context=ctx) == pytest.approx(seen[0], rel=1e-5)

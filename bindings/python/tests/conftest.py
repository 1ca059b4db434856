"""Fixtures: every test that takes ``ctx`` runs on the GPU path (an adapter: lavapipe in
CI) and on the CPU path. Without an adapter the GPU runs skip, unless
``XENT_REQUIRE_GPU=1``, when they fail."""

from __future__ import annotations

import os

import numpy as np
import pytest

import xent


def _gpu():
    try:
        return xent.Context("gpu")
    except xent.XentDeviceError as e:
        if os.environ.get("XENT_REQUIRE_GPU") == "1":
            raise
        return e


_GPU = _gpu()
_CPU = xent.Context("cpu")


@pytest.fixture(params=["gpu", "cpu"])
def ctx(request):
    if request.param == "gpu":
        if isinstance(_GPU, Exception):
            pytest.skip(f"no GPU adapter: {_GPU}")
        return _GPU
    return _CPU


@pytest.fixture
def gpu():
    if isinstance(_GPU, Exception):
        pytest.skip(f"no GPU adapter: {_GPU}")
    return _GPU


@pytest.fixture
def rng():
    return np.random.default_rng(20240527)


def close(got, want, rel=2e-5, abs=2e-5):
    """``|got - want| <= abs + rel * |want|`` elementwise, NaN matching NaN; reports the worst."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert (nan_g == nan_w).all(), f"NaN at {np.argwhere(nan_g != nan_w)[:5].tolist()}"
    inf = np.isinf(want)
    assert (got[inf] == want[inf]).all()
    ok = ~nan_w & ~inf
    err = np.abs(got[ok] - want[ok]) - (abs + rel * np.abs(want[ok]))
    if err.size and err.max() > 0:
        i = int(np.argmax(err))
        raise AssertionError(
            f"{int((err > 0).sum())} of {err.size} differ; worst at {i}: got {got[ok][i]!r}, want {want[ok][i]!r}")

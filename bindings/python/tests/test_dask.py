"""xent.dask on a LocalCluster(n_workers=2, threads_per_worker=1, processes=True): the same
bits as xent.merge of the same shards in path order, counts equal to one run over the
whole set, and a bad file named in the error."""

from __future__ import annotations

import numpy as np
import pytest

import xent

distributed = pytest.importorskip("distributed")
xdask = pytest.importorskip("xent.dask")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((12_000, 25), dtype=np.float32) * 2
    y = rng.integers(0, 25, 12_000)
    y[::13] = -100
    bounds = [0, 1000, 4000, 4100, 9000, 12_000]
    xs, ys = [], []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        np.save(d / f"x{i}.npy", x[a:b])
        np.save(d / f"y{i}.npy", y[a:b])
        xs.append(str(d / f"x{i}.npy"))
        ys.append(str(d / f"y{i}.npy"))
    return x, y, xs, ys, d


def test_dask_is_merge_of_the_shards(client, shards):
    x, y, xs, ys, _ = shards
    r = xdask.evaluate(xs, ys, client=client, per_class=True)
    local = xent.merge([xent.evaluate_files(a, b, per_class=True) for a, b in zip(xs, ys)])
    whole = xent.evaluate(x, y, per_class=True)
    a, b = r.to_dict(), local.to_dict()
    for key in ("sum", "denominator", "mean", "correct", "counted", "top_correct", "brier_sum", "calibration",
                "per_class", "ece", "mce"):
        assert a[key] == b[key], key
    for key in ("rows", "counted", "correct", "top_correct", "per_class"):
        assert a[key] == whole.to_dict()[key], key
    assert a["shards"] == len(xs)
    assert r.loss == pytest.approx(whole.loss, rel=1e-6)
    # again: the same bits whichever task finishes first
    assert xdask.evaluate(xs, ys, client=client, per_class=True).to_dict()["sum"] == a["sum"]


def test_dask_names_a_bad_file(client, shards):
    _, y, xs, ys, d = shards
    bad = np.load(ys[2])
    bad[5] = 99
    np.save(d / "bad.npy", bad)
    with pytest.raises(xent.XentInputError, match=r"bad.npy: row 5: label 99"):
        xdask.evaluate(xs, ys[:2] + [str(d / "bad.npy")] + ys[3:], client=client)


def test_dask_arguments(client, shards):
    _, _, xs, ys, _ = shards
    with pytest.raises(xent.XentInputError, match="labels_paths"):
        xdask.evaluate(xs, ys[:2], client=client)

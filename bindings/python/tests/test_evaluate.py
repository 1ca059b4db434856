"""xent.evaluate and evaluate_files against scikit-learn; the Report; merge."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import close
from reference import ce_mean, softmax
from sklearn.metrics import balanced_accuracy_score, brier_score_loss, log_loss, top_k_accuracy_score

import xent


def data(rng, n, k, scale=2.0):
    x = (rng.standard_normal((n, k)) * scale).astype(np.float32)
    y = rng.integers(0, k, n)
    return x, y


def test_report_matches_scikit_learn(ctx, rng):
    x, y = data(rng, 3000, 20)
    r = xent.evaluate(x, y, top_k=(1, 2, 5), per_class=True, context=ctx)
    p = softmax(x.astype(np.float64), axis=1)
    labels = np.arange(20)
    close(r.loss, log_loss(y, p, labels=labels), rel=1e-5)
    close(r.perplexity, np.exp(log_loss(y, p, labels=labels)), rel=1e-5)
    for k in (1, 2, 5):
        assert r.top_k[k] == top_k_accuracy_score(y, x, k=k, labels=labels)
    assert r.accuracy == np.mean(np.argmax(x, axis=1) == y)
    close(r.brier, brier_score_loss(y, p, labels=labels), rel=1e-5)
    assert r.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, np.argmax(x, axis=1)), rel=1e-12)
    assert r.rows == r.counted == 3000 and r.classes == 20
    assert r.per_class["support"].tolist() == np.bincount(y, minlength=20).tolist()


def test_calibration_bins(ctx, rng):
    x, y = data(rng, 2000, 5)
    r = xent.evaluate(x, y, bins=10, context=ctx)
    p = softmax(x.astype(np.float64), axis=1)
    conf = p.max(axis=1)
    hit = np.argmax(x, axis=1) == y
    b = np.minimum((conf * 10).astype(int), 9)
    ece, mce = 0.0, 0.0
    for i, binned in enumerate(r.calibration):
        m = b == i
        assert binned["count"] == m.sum()
        if m.any():
            gap = abs(hit[m].mean() - conf[m].mean())
            ece += m.mean() * gap
            mce = max(mce, gap)
    close(r.ece, ece, rel=1e-4, abs=1e-6)
    close(r.mce, mce, rel=1e-4, abs=1e-6)


def test_ignored_and_nan_rows(ctx, rng):
    x, y = data(rng, 100, 7)
    y[::5] = -100
    x[3, 2] = np.nan
    r = xent.evaluate(x, y, context=ctx)
    assert r.counted == 80 and r.rows == 100
    assert np.isnan(r.loss) and np.isnan(r.ece)
    keep = y != -100
    hits = (np.argmax(np.nan_to_num(x, nan=-np.inf), axis=1) == y) & keep
    hits[3] = False  # a NaN row is wrong for every k
    assert r.to_dict()["correct"] == hits.sum()


def test_chunked_is_the_same_bits(gpu, rng):
    x, y = data(rng, 70_000, 3)
    whole = xent.evaluate(x, y, context=gpu).to_dict()
    chunked = xent.evaluate(x, y, chunk_rows=4096, context=gpu).to_dict()
    for key in ("sum", "denominator", "correct", "top_correct", "brier_sum", "calibration"):
        assert whole[key] == chunked[key], key
    close(whole["mean"], ce_mean(x, y), rel=1e-5)


def test_f16_and_f64_logits(ctx, rng):
    x, y = data(rng, 500, 9)
    for dtype in (np.float16, np.float64):
        xd = x.astype(dtype)
        r = xent.evaluate(xd, y, context=ctx)
        close(r.loss, ce_mean(xd.astype(np.float64), y), rel=1e-5)
        assert r.to_dict()["dtype"] == np.dtype(dtype).str


def test_files_bigger_than_a_chunk(ctx, rng, tmp_path):
    x, y = data(rng, 20_000, 11)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    seen = []
    r = xent.evaluate_files(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=3000, context=ctx,
                            progress=lambda done, total: seen.append((done, total)))
    a = xent.evaluate(x, y, context=ctx)
    assert len(seen) >= 6 and seen[-1][0] == seen[-1][1]
    close(r.loss, ce_mean(x, y), rel=1e-5)
    for key in ("correct", "top_correct", "calibration", "counted"):
        assert r.to_dict()[key] == a.to_dict()[key]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="read leases are Linux's")
def test_a_file_opened_for_writing_during_the_evaluation_stops_it(rng, tmp_path):
    # on the CPU engine the logits are mapped under a read lease: another process opening them to write waits,
    # and the evaluation stops at the next chunk with an error naming the file, giving the
    # lease up (the writer then goes on)
    x, y = data(rng, 40_000, 16)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    writer = []

    def progress(done, total):
        if not writer:
            code = f"open({str(tmp_path / 'x.npy')!r}, 'r+b').close()"
            writer.append(subprocess.Popen([sys.executable, "-c", code]))
            time.sleep(1.5)

    with pytest.raises(xent.XentInputError, match="x.npy: another process opened it"):
        xent.evaluate_files(tmp_path / "x.npy", tmp_path / "y.npy", chunk_rows=1000, context="cpu",
                            progress=progress)
    assert writer[0].wait(timeout=30) == 0
    # nothing was written: the file is as it was
    assert np.array_equal(np.load(tmp_path / "x.npy"), x)


def test_report_is_frozen_and_pickles(rng):
    x, y = data(rng, 50, 4)
    r = xent.evaluate(x, y, per_class=True)
    with pytest.raises(AttributeError):
        r.loss = 1.0
    back = pickle.loads(pickle.dumps(r))
    assert back == r and back.to_dict() == r.to_dict()
    d = r.to_dict()
    for key in ("command", "rows", "cols", "value", "sum", "denominator", "mean", "accuracy", "correct", "counted",
                "perplexity", "top1", "top5", "top_correct", "ece", "mce", "brier", "brier_sum", "calibration",
                "balanced_accuracy", "per_class", "adapter", "device", "dtype", "seconds"):
        assert key in d, key


def test_merge_is_the_whole(ctx, rng):
    x, y = data(rng, 9000, 6)
    shards = [xent.evaluate(x[a:b], y[a:b], per_class=True, context=ctx) for a, b in ((0, 1000), (1000, 5500),
                                                                                          (5500, 9000))]
    whole = xent.evaluate(x, y, per_class=True, context=ctx)
    merged = xent.merge(shards)
    for key in ("rows", "counted", "correct", "top_correct"):
        assert merged.to_dict()[key] == whole.to_dict()[key], key
    # counts exactly; the f64 sums of confidences within rounding (shards add in another order)
    mc, wc = merged.to_dict()["per_class"], whole.to_dict()["per_class"]
    for column in ("support", "correct", "predicted"):
        assert mc[column] == wc[column], column
    close(np.array(mc["predicted_confidence_sum"]), np.array(wc["predicted_confidence_sum"]), rel=1e-12)
    close(merged.loss, whole.loss, rel=1e-6)
    assert [b["count"] for b in merged.calibration] == [b["count"] for b in whole.calibration]
    # dicts and JSON strings merge too, in their order
    assert xent.merge([s.to_dict() for s in shards]) == xent.merge([s.to_json() for s in shards])


def test_merge_refuses_different_sets(rng):
    x, y = data(rng, 40, 6)
    a = xent.evaluate(x, y)
    b = xent.evaluate(np.ascontiguousarray(x[:, :5]), np.minimum(y, 4))
    with pytest.raises(xent.XentInputError, match="cols"):
        xent.merge([a, b])
    with pytest.raises(xent.XentInputError):
        xent.merge([])
    with pytest.raises(xent.XentInputError):
        xent.merge(["{not json"])


def _cli():
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.environ.get("XENT_BIN"), os.path.join(here, "../../../target/debug/xent"),
                      shutil.which("xent")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.mark.skipif(_cli() is None, reason="the xent command line is not built (cargo build)")
def test_merge_has_the_bits_of_xent_merge(rng, tmp_path):
    x, y = data(rng, 3000, 8)
    paths = []
    for i, (a, b) in enumerate(((0, 700), (700, 3000))):
        r = xent.evaluate(x[a:b], y[a:b])
        p = tmp_path / f"shard{i}.json"
        p.write_text(r.to_json() + "\n")
        paths.append(str(p))
    out = subprocess.run([_cli(), "merge", "--json", *paths], capture_output=True, text=True, check=True)
    cli = json.loads(out.stdout)
    ours = xent.merge([json.loads(open(p).read()) for p in paths]).to_dict()
    for key in ("sum", "denominator", "mean", "correct", "counted", "top_correct", "brier_sum", "calibration", "ece"):
        assert cli[key] == ours[key], key


@pytest.mark.skipif(_cli() is None, reason="the xent command line is not built (cargo build)")
def test_evaluate_files_is_xent_ce(gpu, rng, tmp_path):
    x, y = data(rng, 5000, 30)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y.astype(np.int64))
    # the command line on the same device as the context (its `auto` prefers the CPU engine
    # to a software adapter)
    out = subprocess.run([_cli(), "ce", "--logits", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                          "--json", "--device", "gpu"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "XENT_HOST_IMPORT": os.environ.get("XENT_HOST_IMPORT", "1")})
    cli = json.loads(out.stdout)
    ours = xent.evaluate_files(tmp_path / "x.npy", tmp_path / "y.npy", context=gpu).to_dict()
    for key in ("rows", "cols", "sum", "denominator", "correct", "counted", "top_correct", "calibration", "brier_sum"):
        assert cli[key] == ours[key], key


def test_in_place_and_copied_rows_have_the_same_bits(gpu, rng, tmp_path):
    # where the device reads host memory (lavapipe), arrays are read in place; with
    # XENT_HOST_IMPORT=0 they are copied: the same bits either way
    import sys

    x, y = data(rng, 20_000, 33)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    code = (
        "import sys, json, numpy as np, xent\n"
        "x, y = np.load(sys.argv[1]), np.load(sys.argv[2])\n"
        "c = xent.Context('gpu')\n"
        "print(json.dumps([xent.cross_entropy(x, y, context=c), xent.evaluate(x, y, context=c).to_dict()['sum'],"
        " float(xent.log_softmax(x, context=c).sum(dtype=np.float64))]))\n"
    )
    runs = []
    for flag in ("1", "0"):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                             capture_output=True, text=True, check=True, env={**os.environ, "XENT_HOST_IMPORT": flag})
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]


def test_a_bad_label_is_named(ctx, rng):
    x, y = data(rng, 100, 7)
    y[42] = 7
    with pytest.raises(xent.XentInputError, match=r"labels: row 42: label 7 is outside \[0, 7\)"):
        xent.evaluate(x, y, chunk_rows=10, context=ctx)

"""Every function against NumPy/SciPy in float64, on random and adversarial data."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import close
from reference import ce_mean, ce_rows, log_softmax, logsumexp, softmax
from scipy.special import expit, xlogy

import xent


def logits(rng, n, k, scale=3.0, dtype=np.float32):
    return (rng.standard_normal((n, k)) * scale).astype(dtype)


@pytest.mark.parametrize("shape", [(64, 10), (7, 1), (33, 1001), (70_000, 3)])
def test_cross_entropy_matches_scipy(ctx, rng, shape):
    x = logits(rng, *shape)
    y = rng.integers(0, shape[1], shape[0])
    close(xent.cross_entropy(x, y, context=ctx), ce_mean(x, y), rel=1e-5)
    rows, _ = ce_rows(x, y)
    close(xent.cross_entropy(x, y, reduction="none", context=ctx), rows, rel=2e-5, abs=2e-5)
    close(xent.cross_entropy(x, y, reduction="sum", context=ctx), rows.sum(), rel=1e-5)


def test_cross_entropy_options(ctx, rng):
    x = logits(rng, 200, 17)
    y = rng.integers(0, 17, 200)
    y[::7] = -100
    w = rng.uniform(0.1, 2.0, 17).astype(np.float32)
    close(xent.cross_entropy(x, y, context=ctx), ce_mean(x, y), rel=1e-5)
    close(xent.cross_entropy(x, y, weight=w, context=ctx), ce_mean(x, y, weight=w), rel=1e-5)
    close(xent.cross_entropy(x, y, label_smoothing=0.1, context=ctx), ce_mean(x, y, label_smoothing=0.1), rel=1e-5)
    y3 = np.where(y == -100, 3, y)
    close(xent.cross_entropy(x, y3, ignore_index=3, context=ctx), ce_mean(x, y3, ignore_index=3), rel=1e-5)
    with pytest.raises(xent.XentInputError, match=r"target: row 0: label -100 is outside \[0, 17\)"):
        xent.cross_entropy(x, y, ignore_index=3, context=ctx)
    # z-loss: lambda * lse**2 added to each row not ignored
    keep = y != -100
    lse = logsumexp(x.astype(np.float64), axis=1)
    rows, denom = ce_rows(x, y)
    want = (rows + np.where(keep, 1e-3 * lse**2, 0)).sum() / denom.sum()
    close(xent.cross_entropy(x, y, z_loss=1e-3, context=ctx), want, rel=1e-5)


def test_cross_entropy_with_probabilities(ctx, rng):
    x = logits(rng, 50, 9)
    p = softmax(rng.standard_normal((50, 9)), axis=1).astype(np.float32)
    want = -(p * log_softmax(x.astype(np.float64), axis=1)).sum(axis=1)
    close(xent.cross_entropy(x, p, context=ctx), want.mean(), rel=1e-5)
    close(xent.cross_entropy(x, p, reduction="none", context=ctx), want, rel=2e-5, abs=2e-5)
    w = rng.uniform(0.5, 1.5, 9)
    s = 0.2
    pt = ((1 - s) * p + s / 9) * w
    want = -(pt * log_softmax(x.astype(np.float64), axis=1)).sum(axis=1).mean()
    close(xent.cross_entropy(x, p, weight=w, label_smoothing=s, context=ctx), want, rel=1e-5)


def test_cross_entropy_single_sample(ctx, rng):
    x = logits(rng, 1, 5)[0]
    close(xent.cross_entropy(x, np.array(2), context=ctx), ce_mean(x[None], np.array([2])), rel=1e-5)


def test_adversarial_rows(ctx, rng):
    x = logits(rng, 8, 6)
    x[0] *= 1e4 / 3  # +-1e4
    x[1, :3] = -np.inf  # masked classes
    x[2, 4] = np.nan  # a NaN row
    x[3, :] = 1e4
    y = np.array([1, 4, 0, 5, 0, 1, 2, -100])
    got = xent.cross_entropy(x, y, reduction="none", context=ctx)
    want, _ = ce_rows(x, y)
    want[2] = np.nan
    close(got, want, rel=2e-5, abs=2e-4)
    assert np.isnan(xent.cross_entropy(x, y, context=ctx))
    # the label on a masked class: +inf, as PyTorch
    assert xent.cross_entropy(x[1:2], np.array([0]), context=ctx) == np.inf


def test_all_ignored_mean_is_nan(ctx, rng):
    x = logits(rng, 4, 3)
    assert np.isnan(xent.cross_entropy(x, np.full(4, -100), context=ctx))
    assert xent.cross_entropy(x, np.full(4, -100), reduction="sum", context=ctx) == 0.0


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_other_float_dtypes(ctx, rng, dtype):
    x = logits(rng, 300, 40, dtype=dtype)
    y = rng.integers(0, 40, 300)
    close(xent.cross_entropy(x, y, context=ctx), ce_mean(x.astype(np.float64), y), rel=1e-5 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64, np.uint8, np.uint16, np.uint32])
def test_label_dtypes(ctx, rng, label_dtype):
    x = logits(rng, 100, 12)
    y = rng.integers(0, 12, 100).astype(label_dtype)
    close(xent.cross_entropy(x, y, context=ctx), ce_mean(x, y.astype(np.int64)), rel=1e-5)


def test_softmax_family(ctx, rng):
    x = logits(rng, 65, 129)
    x[3, 5:9] = -np.inf
    x64 = x.astype(np.float64)
    close(xent.softmax(x, context=ctx), softmax(x64, axis=-1), rel=1e-5, abs=1e-7)
    close(xent.log_softmax(x, context=ctx), log_softmax(x64, axis=-1), rel=1e-5, abs=1e-5)
    close(xent.softmax(x, temperature=2.5, context=ctx), softmax(x64 / 2.5, axis=-1), rel=1e-5, abs=1e-7)
    close(xent.logsumexp(x, context=ctx), logsumexp(x64, axis=-1), rel=1e-6, abs=1e-6)
    close(xent.logsumexp(x, keepdim=True, context=ctx), logsumexp(x64, axis=-1, keepdims=True), rel=1e-6)
    # other dims and ranks
    t = logits(rng, 6, 20).reshape(2, 3, 20)
    close(xent.softmax(t, dim=1, context=ctx), softmax(t.astype(np.float64), axis=1), rel=1e-5, abs=1e-7)
    close(xent.logsumexp(t, dim=0, context=ctx), logsumexp(t.astype(np.float64), axis=0), rel=1e-6)
    c = 3.0
    close(xent.logsumexp(x, softcap=c, context=ctx), logsumexp(c * np.tanh(x64 / c), axis=-1), rel=1e-5)


def test_kl_div(ctx, rng):
    q = log_softmax(rng.standard_normal((40, 11)), axis=1)
    p = softmax(rng.standard_normal((40, 11)), axis=1)
    terms = xlogy(p, p) - p * q
    qf, pf = q.astype(np.float32), p.astype(np.float32)
    close(xent.kl_div(qf, pf, reduction="batchmean", context=ctx), terms.sum() / 40, rel=2e-5, abs=1e-6)
    close(xent.kl_div(qf, pf, reduction="sum", context=ctx), terms.sum(), rel=2e-5, abs=1e-6)
    close(xent.kl_div(qf, pf, context=ctx), terms.mean(), rel=2e-5, abs=1e-6)
    # "none": PyTorch's elementwise terms, the input's shape (zeros in P give 0, NaN stays NaN)
    pz = pf.copy()
    pz[0, :3] = 0.0
    pz[1, 2] = np.nan
    want = xlogy(pz.astype(np.float64), pz) - pz.astype(np.float64) * qf
    got = xent.kl_div(qf, pz, reduction="none", context=ctx)
    assert got.shape == qf.shape and got.dtype == np.float32
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(got[1, 2])
    assert np.all(got[0, :3] == 0.0)
    close(got[~np.isnan(want)], want[~np.isnan(want)], rel=2e-5, abs=1e-6)
    close(xent.kl_div(qf, np.log(pf), log_target=True, reduction="none", context=ctx), terms, rel=2e-5, abs=1e-6)
    close(xent.kl_div(qf, np.log(pf), log_target=True, reduction="batchmean", context=ctx), terms.sum() / 40,
          rel=2e-5, abs=1e-6)


def test_binary_cross_entropy(ctx, rng):
    x = rng.standard_normal((30, 7)).astype(np.float32) * 4
    t = rng.uniform(0, 1, (30, 7)).astype(np.float32)
    x64 = x.astype(np.float64)
    with_logits = np.maximum(x64, 0) - x64 * t + np.log1p(np.exp(-np.abs(x64)))
    close(xent.binary_cross_entropy_with_logits(x, t, context=ctx), with_logits.mean(), rel=1e-5)
    close(xent.binary_cross_entropy_with_logits(x, t, reduction="none", context=ctx), with_logits, rel=1e-5,
          abs=1e-6)
    w = rng.uniform(0, 2, (30, 7)).astype(np.float32)
    close(xent.binary_cross_entropy_with_logits(x, t, weight=w, reduction="sum", context=ctx),
          (w * with_logits).sum(), rel=1e-5)
    p = expit(x64).astype(np.float32)
    p[0, 0], p[0, 1] = 0.0, 1.0  # logs clamped at -100, as PyTorch
    p64 = p.astype(np.float64)
    with np.errstate(divide="ignore"):
        bce = -(t * np.maximum(np.log(p64), -100) + (1 - t) * np.maximum(np.log1p(-p64), -100))
    close(xent.binary_cross_entropy(p, t, context=ctx), bce.mean(), rel=1e-5)
    # pos_weight, a weight a class (PyTorch's formula, float64), and a scalar one
    pw = rng.uniform(0.2, 5.0, 7)
    weighted = (1 - t) * x64 + (1 + (pw - 1) * t) * np.logaddexp(0.0, -x64)
    close(xent.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none", context=ctx), weighted,
          rel=1e-5, abs=1e-6)
    close(xent.binary_cross_entropy_with_logits(x, t, pos_weight=pw, context=ctx), weighted.mean(), rel=1e-5)
    close(xent.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=np.float32(3.0), reduction="sum",
                                                context=ctx),
          (w * ((1 - t) * x64 + (1 + 2 * t) * np.logaddexp(0.0, -x64))).sum(), rel=1e-5)
    one_d = xent.binary_cross_entropy_with_logits(x[:, 0].copy(), t[:, 0].copy(), reduction="none", context=ctx)
    close(one_d, with_logits[:, 0], rel=1e-5, abs=1e-6)


def test_entropy_jsd_gaussian_distill(ctx, rng):
    x = logits(rng, 25, 13)
    x64 = x.astype(np.float64)
    p = softmax(x64, axis=1)
    h = -xlogy(p, p).sum(axis=1)
    close(xent.entropy(x, context=ctx), h, rel=2e-5, abs=1e-6)
    close(xent.entropy(p.astype(np.float32), logits=False, context=ctx), h, rel=2e-5, abs=1e-6)
    close(xent.entropy(x, base=2, reduction="mean", context=ctx), h.mean() / np.log(2), rel=2e-5)
    s = logits(rng, 25, 13)
    q = softmax(s.astype(np.float64), axis=1)
    for beta in (0.0, 0.3, 0.5, 1.0):
        m = beta * p + (1 - beta) * q
        if beta == 0.0:
            want = (xlogy(p, p) - xlogy(p, q)).sum(axis=1)
        elif beta == 1.0:
            want = (xlogy(q, q) - xlogy(q, p)).sum(axis=1)
        else:
            want = beta * (xlogy(p, p) - xlogy(p, m)).sum(axis=1) + (1 - beta) * (xlogy(q, q) - xlogy(q, m)).sum(axis=1)
        close(xent.jsd(s, x, beta=beta, reduction="none", context=ctx), want, rel=5e-5, abs=2e-6)
    mu = rng.standard_normal((25, 8)).astype(np.float32)
    lv = rng.standard_normal((25, 8)).astype(np.float32)
    kl = -0.5 * (1 + lv.astype(np.float64) - mu.astype(np.float64) ** 2 - np.exp(lv.astype(np.float64))).sum(axis=1)
    close(xent.gaussian_kl(mu, lv, reduction="none", context=ctx), kl, rel=1e-5, abs=1e-6)
    close(xent.gaussian_kl(mu, lv, context=ctx), kl.mean(), rel=1e-5)
    y = rng.integers(0, 13, 25)
    tau, alpha = 2.0, 0.3
    pt = softmax(x64 / tau, axis=1)
    ls = log_softmax(s.astype(np.float64) / tau, axis=1)
    kl_t = (xlogy(pt, pt) - pt * ls).sum(axis=1)
    ce, _ = ce_rows(s, y)
    want = alpha * tau**2 * kl_t + (1 - alpha) * ce
    close(xent.distillation_loss(s, x, y, temperature=tau, alpha=alpha, reduction="none", context=ctx), want,
          rel=5e-5, abs=2e-6)


def test_linear_cross_entropy(ctx, rng):
    h = rng.standard_normal((300, 16)).astype(np.float32)
    w = (rng.standard_normal((50, 16)) * 0.3).astype(np.float32)
    b = rng.standard_normal(50).astype(np.float32)
    y = rng.integers(0, 50, 300)
    y[::11] = -100
    z = h.astype(np.float64) @ w.astype(np.float64).T + b
    close(xent.linear_cross_entropy(h, w, y, b, context=ctx), ce_mean(z, y), rel=2e-5)
    rows, _ = ce_rows(z, y)
    close(xent.linear_cross_entropy(h, w, y, b, reduction="none", context=ctx), rows, rel=5e-5, abs=5e-5)
    close(xent.linear_cross_entropy(h, w, y, context=ctx), ce_mean(h.astype(np.float64) @ w.T.astype(np.float64), y),
          rel=2e-5)


def test_gpu_and_cpu_agree(gpu, rng):
    x = logits(rng, 500, 31)
    y = rng.integers(0, 31, 500)
    close(xent.cross_entropy(x, y, context=gpu), xent.cross_entropy(x, y, context="cpu"), rel=1e-5)


def test_deterministic_bits(gpu, rng):
    x = logits(rng, 5000, 100)
    y = rng.integers(0, 100, 5000)
    a = [xent.cross_entropy(x, y, context=gpu) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_no_copy_of_a_read_only_array(ctx, rng):
    # borrowed, never written: a read-only array works, and is unchanged
    x = logits(rng, 10, 4)
    x.setflags(write=False)
    before = x.copy()
    xent.softmax(x, context=ctx)
    assert (x == before).all()


def _peak_over_call(f):
    """Peak RSS during ``f()`` over the RSS before it, in bytes (Linux)."""
    with open("/proc/self/clear_refs", "w") as c:
        c.write("5")
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    before = int(fields["VmRSS"].split()[0])
    f()
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return (int(fields["VmHWM"].split()[0]) - before) * 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux's peak RSS reset")
def test_float32_is_read_in_place(rng):
    # the CPU path: no copy of the array on the binding's side (64 MiB of logits)
    x = rng.standard_normal((16_384, 1024), dtype=np.float32)
    y = rng.integers(0, 1024, 16_384)
    xent.cross_entropy(x[:10], y[:10], context="cpu")
    grew = _peak_over_call(lambda: xent.cross_entropy(x, y, context="cpu"))
    assert grew < x.nbytes / 4, grew


def test_float16_logits_with_float32_targets(ctx, rng):
    # the targets keep their precision: no narrowing to the logits' float16
    x = rng.standard_normal((50, 7)).astype(np.float16)
    p = softmax(rng.standard_normal((50, 7)), axis=1).astype(np.float32)
    want = -(p * log_softmax(x.astype(np.float64), axis=1)).sum(axis=1).mean()
    close(xent.cross_entropy(x, p, context=ctx), want, rel=1e-5)
    t = rng.uniform(0, 1, (50, 7)).astype(np.float32)
    x64 = x.astype(np.float64)
    want = (np.maximum(x64, 0) - x64 * t + np.log1p(np.exp(-np.abs(x64)))).mean()
    close(xent.binary_cross_entropy_with_logits(x, t, context=ctx), want, rel=1e-5)

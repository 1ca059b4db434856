"""return_grad: the gradient the kernel writes against central differences of the float64
formulas (and the closed form of cross-entropy's)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import close
from reference import ce_mean, log_softmax, softmax
from scipy.special import xlogy

import xent


def numeric_grad(f, x, h=1e-5):
    x = x.astype(np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def test_cross_entropy_grad_closed_form(ctx, rng):
    x = (rng.standard_normal((300, 17)) * 3).astype(np.float32)
    y = rng.integers(0, 17, 300)
    y[::7] = -100
    loss, g = xent.cross_entropy(x, y, return_grad=True, context=ctx)
    keep = y != -100
    want = softmax(x.astype(np.float64), axis=1)
    want[np.arange(300)[keep], y[keep]] -= 1
    want[~keep] = 0
    close(g, want / keep.sum(), rel=1e-4, abs=1e-7)
    close(loss, ce_mean(x, y), rel=1e-5)
    _, gs = xent.cross_entropy(x, y, reduction="sum", return_grad=True, context=ctx)
    close(gs, want, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("kw", [{"label_smoothing": 0.1}, {"weight": True}, {"z_loss": 1e-2}, {"softcap": 2.0}])
def test_cross_entropy_grad_options(ctx, rng, kw):
    x = (rng.standard_normal((6, 5)) * 2).astype(np.float32)
    y = rng.integers(0, 5, 6)
    w = rng.uniform(0.5, 2, 5).astype(np.float32)
    kw = {k: (w if k == "weight" else v) for k, v in kw.items()}

    def f(z):
        if "softcap" in kw:
            c = kw["softcap"]
            z = c * np.tanh(z / c)
        m = ce_mean(z, y, weight=kw.get("weight"), label_smoothing=kw.get("label_smoothing", 0.0))
        if "z_loss" in kw:
            from scipy.special import logsumexp

            m += kw["z_loss"] * np.mean(logsumexp(z, axis=1) ** 2)
        return m

    _, g = xent.cross_entropy(x, y, return_grad=True, context=ctx, **kw)
    close(g, numeric_grad(f, x), rel=1e-3, abs=1e-5)


def test_probability_targets_grad(ctx, rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    p = softmax(rng.standard_normal((5, 4)), axis=1).astype(np.float32)
    _, g = xent.cross_entropy(x, p, return_grad=True, context=ctx)
    close(g, (softmax(x.astype(np.float64), axis=1) - p) / 5, rel=1e-4, abs=1e-7)


def test_other_grads(ctx, rng):
    x = rng.standard_normal((4, 6)).astype(np.float32) * 2
    t = rng.uniform(0, 1, (4, 6)).astype(np.float32)
    _, g = xent.binary_cross_entropy_with_logits(x, t, return_grad=True, context=ctx)
    close(g, (1 / (1 + np.exp(-x.astype(np.float64))) - t) / x.size, rel=1e-4, abs=1e-7)

    def entropy_mean(z):
        p = softmax(z, axis=1)
        return np.mean(-xlogy(p, p).sum(axis=1))

    _, g = xent.entropy(x, reduction="mean", return_grad=True, context=ctx)
    close(g, numeric_grad(entropy_mean, x), rel=1e-3, abs=1e-6)
    teacher = rng.standard_normal((4, 6)).astype(np.float32)
    y = rng.integers(0, 6, 4)

    def distill(s, tau=2.0, alpha=0.3):
        pt = softmax(teacher.astype(np.float64) / tau, axis=1)
        kl = (xlogy(pt, pt) - pt * log_softmax(s / tau, axis=1)).sum(axis=1)
        return np.mean(alpha * tau**2 * kl) + (1 - alpha) * ce_mean(s, y)

    _, g = xent.distillation_loss(x, teacher, y, temperature=2.0, alpha=0.3, return_grad=True, context=ctx)
    close(g, numeric_grad(distill, x), rel=1e-3, abs=1e-6)


def test_grad_in_chunks_is_whole(gpu, rng):
    # more rows than a chunk of the gradient's upload (32 MiB of logits)
    x = rng.standard_normal((70_000, 130)).astype(np.float32)
    y = rng.integers(0, 130, 70_000)
    _, g = xent.cross_entropy(x, y, reduction="sum", return_grad=True, context=gpu)
    sl = slice(69_990, 70_000)
    want = softmax(x[sl].astype(np.float64), axis=1)
    want[np.arange(10), y[sl]] -= 1
    close(g[sl], want, rel=1e-4, abs=1e-6)
    assert g.shape == x.shape


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean"])
def test_kl_div_grad_through_the_softmax(ctx, rng, reduction):
    z = rng.standard_normal((5, 7)) * 2
    q = log_softmax(z, axis=1).astype(np.float32)
    p = softmax(rng.standard_normal((5, 7)), axis=1).astype(np.float32)
    div = {"batchmean": 5, "sum": 1, "mean": q.size}[reduction]

    def f(zz):
        lq = log_softmax(zz, axis=1)
        return (xlogy(p, p) - p * lq).sum() / div

    loss, g = xent.kl_div(q, p, reduction=reduction, return_grad=True, context=ctx)
    close(loss, f(q.astype(np.float64)), rel=1e-5)
    close(g, numeric_grad(f, q), rel=1e-3, abs=1e-6)
    with pytest.raises(xent.XentInputError, match="return_grad"):
        xent.kl_div(q, p, reduction="none", return_grad=True, context=ctx)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_jsd_grad(ctx, rng, beta):
    q = rng.standard_normal((4, 6)).astype(np.float32) * 2
    p = rng.standard_normal((4, 6)).astype(np.float32) * 2

    def f(zq, tau=1.5):
        lq = log_softmax(zq / tau, axis=1)
        lp = log_softmax(p.astype(np.float64) / tau, axis=1)
        pq, pp = np.exp(lq), np.exp(lp)
        if beta == 0.0:
            rows = (pp * (lp - lq)).sum(axis=1)
        elif beta == 1.0:
            rows = (pq * (lq - lp)).sum(axis=1)
        else:
            lm = np.log(beta * pp + (1 - beta) * pq)
            rows = beta * (pp * (lp - lm)).sum(axis=1) + (1 - beta) * (pq * (lq - lm)).sum(axis=1)
        return rows.mean()

    loss, g = xent.jsd(q, p, beta=beta, temperature=1.5, return_grad=True, context=ctx)
    close(loss, f(q.astype(np.float64)), rel=1e-5, abs=1e-7)
    close(g, numeric_grad(f, q), rel=1e-3, abs=1e-6)
    with pytest.raises(xent.XentInputError, match="log_input"):
        xent.jsd(softmax(q, axis=1), softmax(p, axis=1), log_input=False, return_grad=True, context=ctx)


def test_entropy_grad_in_bits(ctx, rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    _, nats = xent.entropy(x, reduction="sum", return_grad=True, context=ctx)
    _, bits = xent.entropy(x, reduction="sum", base=2, return_grad=True, context=ctx)
    close(bits, nats / np.log(2), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_linear_cross_entropy_grads(ctx, rng, reduction):
    n, d, k = 40, 6, 9
    h = rng.standard_normal((n, d)).astype(np.float32)
    w = (rng.standard_normal((k, d)) * 0.5).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    y = rng.integers(0, k, n)
    y[::7] = -100
    keep = y != -100
    loss, (gh, gw, gb) = xent.linear_cross_entropy(h, w, y, b, reduction=reduction, return_grad=True, context=ctx)
    z = h.astype(np.float64) @ w.astype(np.float64).T + b
    gz = softmax(z, axis=1)
    gz[np.arange(n)[keep], y[keep]] -= 1
    gz[~keep] = 0
    if reduction == "mean":
        gz /= keep.sum()
        close(loss, ce_mean(z, y), rel=2e-5)
    assert (gh.shape, gw.shape, gb.shape) == ((n, d), (k, d), (k,))
    close(gh, gz @ w.astype(np.float64), rel=1e-4, abs=1e-6)
    close(gw, gz.T @ h.astype(np.float64), rel=1e-4, abs=1e-6)
    close(gb, gz.sum(axis=0), rel=1e-4, abs=1e-6)
    _, (_, _, none) = xent.linear_cross_entropy(h, w, y, return_grad=True, context=ctx)
    assert none is None
    with pytest.raises(xent.XentInputError, match="return_grad"):
        xent.linear_cross_entropy(h, w, y, reduction="none", return_grad=True, context=ctx)

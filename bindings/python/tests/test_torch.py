"""Against PyTorch's own functions, where PyTorch is installed (skipped otherwise); tensors
go in as they are (through DLPack, no copy)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import close

import xent

torch = pytest.importorskip("torch")
F = torch.nn.functional


def test_cross_entropy_like_torch(ctx):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 37, generator=g) * 3
    y = torch.randint(0, 37, (300,), generator=g)
    y[::9] = -100
    w = torch.rand(37, generator=g) + 0.5
    for kw in ({}, {"weight": w}, {"label_smoothing": 0.1}, {"weight": w, "label_smoothing": 0.2}):
        want = F.cross_entropy(x.double(), y, **{k: (v.double() if torch.is_tensor(v) else v)
                                                 for k, v in kw.items()}).item()
        got = xent.cross_entropy(x, y, **{k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in kw.items()},
                                 context=ctx)
        close(got, want, rel=2e-5)
    close(xent.cross_entropy(x, y, reduction="none", context=ctx), F.cross_entropy(x.double(), y, reduction="none"),
          rel=2e-5, abs=2e-5)


def test_divergences_like_torch(ctx):
    g = torch.Generator().manual_seed(4)
    q = F.log_softmax(torch.randn(50, 9, generator=g), dim=1)
    p = F.softmax(torch.randn(50, 9, generator=g), dim=1)
    for reduction in ("batchmean", "sum", "mean"):
        close(xent.kl_div(q, p, reduction=reduction, context=ctx), F.kl_div(q.double(), p.double(),
                                                                            reduction=reduction).item(), rel=2e-5)
    close(xent.kl_div(q, p, reduction="none", context=ctx), F.kl_div(q.double(), p.double(), reduction="none").numpy(),
          rel=2e-5, abs=1e-6)
    x = torch.randn(40, 6, generator=g) * 3
    t = torch.rand(40, 6, generator=g)
    close(xent.binary_cross_entropy_with_logits(x, t, context=ctx),
          F.binary_cross_entropy_with_logits(x.double(), t.double()).item(), rel=2e-5)
    pw = torch.rand(6, generator=g) * 4 + 0.25
    close(xent.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none", context=ctx),
          F.binary_cross_entropy_with_logits(x.double(), t.double(), pos_weight=pw.double(), reduction="none").numpy(),
          rel=2e-5, abs=2e-6)
    close(xent.binary_cross_entropy(torch.sigmoid(x), t, reduction="none", context=ctx),
          F.binary_cross_entropy(torch.sigmoid(x).double(), t.double(), reduction="none").numpy(), rel=2e-5,
          abs=2e-5)
    close(xent.log_softmax(x, dim=0, context=ctx), F.log_softmax(x.double(), dim=0).numpy(), rel=2e-5, abs=2e-6)
    close(xent.logsumexp(x, 1, context=ctx), torch.logsumexp(x.double(), 1).numpy(), rel=2e-6)


def test_a_tensor_that_requires_grad(ctx):
    x = torch.randn(8, 5, requires_grad=True)
    y = torch.randint(0, 5, (8,))
    close(xent.cross_entropy(x, y, context=ctx), F.cross_entropy(x.detach().double(), y).item(), rel=2e-5)
    assert np.isfinite(xent.cross_entropy(x, y, context=ctx))


def test_gradients_like_torch_autograd(ctx):
    g = torch.Generator().manual_seed(5)
    h = torch.randn(64, 12, generator=g, dtype=torch.float64)
    w = torch.randn(20, 12, generator=g, dtype=torch.float64) * 0.4
    b = torch.randn(20, generator=g, dtype=torch.float64)
    y = torch.randint(0, 20, (64,), generator=g)
    y[::5] = -100
    hh, ww, bb = (t.clone().requires_grad_() for t in (h, w, b))
    F.cross_entropy(F.linear(hh, ww, bb), y, label_smoothing=0.1).backward()
    loss, (gh, gw, gb) = xent.linear_cross_entropy(h.float(), w.float(), y, b.float(), label_smoothing=0.1,
                                                   return_grad=True, context=ctx)
    close(loss, F.cross_entropy(F.linear(h, w, b), y, label_smoothing=0.1).item(), rel=2e-5)
    close(gh, hh.grad.numpy(), rel=1e-4, abs=1e-6)
    close(gw, ww.grad.numpy(), rel=1e-4, abs=1e-6)
    close(gb, bb.grad.numpy(), rel=1e-4, abs=1e-6)
    z = torch.randn(10, 7, generator=g, dtype=torch.float64, requires_grad=True)
    p = F.softmax(torch.randn(10, 7, generator=g, dtype=torch.float64), dim=1)
    F.kl_div(F.log_softmax(z, dim=1), p, reduction="batchmean").backward()
    _, gk = xent.kl_div(F.log_softmax(z, dim=1).detach().float(), p.float(), reduction="batchmean",
                        return_grad=True, context=ctx)
    close(gk, z.grad.numpy(), rel=1e-4, abs=1e-6)

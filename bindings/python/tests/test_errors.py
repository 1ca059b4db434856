"""Bad input for every argument: an XentInputError (a ValueError) naming it, never a panic."""

from __future__ import annotations

import numpy as np
import pytest

import xent


@pytest.fixture
def xy(rng):
    return rng.standard_normal((20, 5)).astype(np.float32), rng.integers(0, 5, 20)


def raises(match):
    return pytest.raises(xent.XentInputError, match=match)


def test_hierarchy():
    assert issubclass(xent.XentInputError, ValueError) and issubclass(xent.XentInputError, xent.XentError)
    assert issubclass(xent.XentDeviceError, RuntimeError) and issubclass(xent.XentDeviceError, xent.XentError)


def test_cross_entropy_arguments(ctx, xy):
    x, y = xy
    with raises("input: .*not C-contiguous"):
        xent.cross_entropy(np.asfortranarray(x), y, context=ctx)
    with raises("target: .*not C-contiguous"):
        xent.cross_entropy(x[:10], y[::2], context=ctx)
    with raises("input: dtype int64"):
        xent.cross_entropy(np.zeros((3, 4), dtype=np.int64), np.zeros(3, dtype=np.int64), context=ctx)
    with raises("target: dtype bool"):
        xent.cross_entropy(x, np.zeros(20, dtype=bool), context=ctx)
    with raises("target: 19 labels for 20 rows"):
        xent.cross_entropy(x, y[:19], context=ctx)
    with raises("target: class labels must be 1-D"):
        xent.cross_entropy(x, y.reshape(4, 5), context=ctx)
    with raises("input: expected"):
        xent.cross_entropy(x.reshape(4, 5, 5), y, context=ctx)
    bad = y.copy()
    bad[7] = 5
    with raises(r"target: row 7: label 5 is outside \[0, 5\)"):
        xent.cross_entropy(x, bad, context=ctx)
    bad[7] = -1
    with raises("row 7: label -1"):
        xent.cross_entropy(x, bad, context=ctx)
    with raises("weight: expected shape"):
        xent.cross_entropy(x, y, weight=np.ones(4, np.float32), context=ctx)
    with raises("label_smoothing"):
        xent.cross_entropy(x, y, label_smoothing=1.5, context=ctx)
    with raises("z_loss"):
        xent.cross_entropy(x, y, z_loss=-1.0, context=ctx)
    with raises("softcap"):
        xent.cross_entropy(x, y, softcap=0.0, context=ctx)
    with raises("reduction"):
        xent.cross_entropy(x, y, reduction="avg", context=ctx)
    with raises("empty"):
        xent.cross_entropy(np.zeros((0, 5), np.float32), np.zeros(0, np.int64), context=ctx)
    with raises("target: probabilities must have"):
        xent.cross_entropy(x, np.ones((20, 4), np.float32), context=ctx)


def test_other_functions(ctx, xy):
    x, _ = xy
    with raises("temperature"):
        xent.softmax(x, temperature=0.0, context=ctx)
    with raises("dim 2 is out of range"):
        xent.softmax(x, dim=2, context=ctx)
    with raises("target: shape"):
        xent.kl_div(x, x[:10].copy(), context=ctx)
    with raises("reduction"):
        xent.kl_div(x, x, reduction="avg", context=ctx)
    with raises("beta"):
        xent.jsd(x, x, beta=2.0, context=ctx)
    with raises("alpha"):
        xent.distillation_loss(x, x, np.zeros(20, np.int64), alpha=-0.1, context=ctx)
    with raises("pos_weight: shape"):
        xent.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(4), context=ctx)
    with raises("return_grad"):
        xent.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(5), return_grad=True, context=ctx)
    p = np.full((20, 5), 0.2, np.float32)
    p[4, 1] = 1.5
    with raises("row 4"):
        xent.binary_cross_entropy(p, p * 0, context=ctx)
    with raises("weight: shape"):
        xent.linear_cross_entropy(x, np.ones((3, 4), np.float32), np.zeros(20, np.int64), context=ctx)
    with raises("bias: expected shape"):
        xent.linear_cross_entropy(x, np.ones((3, 5), np.float32), np.zeros(20, np.int64), np.ones(2), context=ctx)
    with raises("base"):
        xent.entropy(x, base=3, context=ctx)


def test_evaluate_arguments(ctx, xy, tmp_path):
    x, y = xy
    with raises("top_k"):
        xent.evaluate(x, y, top_k=(0,), context=ctx)
    with raises("bins"):
        xent.evaluate(x, y, bins=0, context=ctx)
    with raises("labels: 19 labels"):
        xent.evaluate(x, y[:19], context=ctx)
    with raises("chunk_rows"):
        xent.evaluate(x, y, chunk_rows=0, context=ctx)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "yf.npy", y.astype(np.float32))
    bad = y.copy()
    bad[13] = 9
    np.save(tmp_path / "bad.npy", bad)
    with raises("yf.npy must hold integer labels"):
        xent.evaluate_files(tmp_path / "x.npy", tmp_path / "yf.npy", context=ctx)
    with raises(r"bad.npy: row 13: label 9 is outside \[0, 5\)"):
        xent.evaluate_files(tmp_path / "x.npy", tmp_path / "bad.npy", context=ctx)
    with raises("missing.npy"):
        xent.evaluate_files(tmp_path / "missing.npy", tmp_path / "y.npy", context=ctx)
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    with raises("junk.npy"):
        xent.evaluate_files(tmp_path / "junk.npy", tmp_path / "y.npy", context=ctx)


def test_context_arguments():
    with raises("device"):
        xent.Context("tpu")
    with raises("context"):
        xent.cross_entropy(np.zeros((2, 2), np.float32), np.zeros(2, np.int64), context=3)
    assert xent.Context("cpu").device == "cpu"
    info = xent.info()
    assert info["version"] == xent.__version__ and "default" in info


def test_progress_callback_errors_propagate(ctx, xy):
    x, y = xy

    def boom(done, total):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        xent.evaluate(x, y, chunk_rows=5, progress=boom, context=ctx)


def test_no_adapter_is_a_device_error():
    import subprocess
    import sys

    code = (
        "import xent\n"
        "try:\n"
        "    xent.Context('gpu')\n"
        "except xent.XentDeviceError as e:\n"
        "    assert isinstance(e, RuntimeError)\n"
        "    print('device error:', e)\n"
        "print(xent.Context('auto').device)\n"
    )
    env = {**__import__("os").environ, "WGPU_ADAPTER_NAME": "no such adapter anywhere"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "device error: no GPU adapter" in out.stdout
    assert out.stdout.strip().endswith("cpu")
    assert "panicked" not in out.stderr

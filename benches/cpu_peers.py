"""The CPU engine against what a user runs instead, in one run on one machine.

    python3 benches/cpu_peers.py [--xent target/release/xent] [--iters 5]
    python3 benches/cpu_peers.py --e2e LOGITS.npy LABELS.npy [--xent ...]

In memory (the default): `lse`, `ce` and `kl` over [8192, 4096] and [65536, 1000] f32 (and
f16 for xent), with NumPy, PyTorch on the CPU and JAX's jit where they are installed, a
NumPy copy of the same bytes (the memory system's roofline), and `xent bench --device cpu`
over the same shapes; the median of --iters runs each, as a table of ms and GB/s (bytes
read over seconds).

--e2e: `ce` from the files to the mean, the whole loop timed: `xent ce --device cpu`, the
NumPy loop of benches/numpy_ce.py, and JAX's jit over the same memory-mapped chunks.
"""

import argparse
import json
import subprocess
import sys
import time

import numpy as np

SHAPES = [(8192, 4096), (65536, 1000)]
OPS = ["lse", "ce", "kl"]


def median_seconds(f, iters):
    f()  # warm up (and compile, for JAX)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def numpy_ops(x, q, y):
    def lse():
        m = x.max(axis=1, keepdims=True)
        return m[:, 0] + np.log(np.exp(x - m).sum(axis=1))

    def ce():
        return float((lse() - x[np.arange(len(y)), y]).mean())

    def kl():
        def log_softmax(v):
            m = v.max(axis=1, keepdims=True)
            z = v - m
            return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

        lp, lq = log_softmax(x), log_softmax(q)
        return float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())

    return {"lse": lambda: float(lse().sum()), "ce": ce, "kl": kl}


def torch_ops(x, q, y):
    import torch
    import torch.nn.functional as F

    tx, tq, ty = torch.from_numpy(x), torch.from_numpy(q), torch.from_numpy(y.astype(np.int64))

    def run(f):
        def g():
            with torch.inference_mode():
                return float(f())

        return g

    return {
        "lse": run(lambda: torch.logsumexp(tx, dim=1).sum()),
        "ce": run(lambda: F.cross_entropy(tx, ty)),
        "kl": run(lambda: F.kl_div(F.log_softmax(tq, 1), F.log_softmax(tx, 1), log_target=True, reduction="batchmean")),
    }


def jax_ops(x, q, y):
    import jax
    import jax.numpy as jnp

    jx, jq, jy = jnp.asarray(x), jnp.asarray(q), jnp.asarray(y)

    @jax.jit
    def lse(a):
        return jax.nn.logsumexp(a, axis=1).sum()

    @jax.jit
    def ce(a, labels):
        l = jax.nn.logsumexp(a, axis=1)
        return (l - jnp.take_along_axis(a, labels[:, None], axis=1)[:, 0]).mean()

    @jax.jit
    def kl(a, b):
        lp, lq = jax.nn.log_softmax(a, axis=1), jax.nn.log_softmax(b, axis=1)
        return (jnp.exp(lp) * (lp - lq)).sum(axis=1).mean()

    return {
        "lse": lambda: float(lse(jx).block_until_ready()),
        "ce": lambda: float(ce(jx, jy).block_until_ready()),
        "kl": lambda: float(kl(jx, jq).block_until_ready()),
    }


def peers():
    found = [("numpy " + np.__version__, numpy_ops)]
    try:
        import torch

        found.append(("pytorch " + torch.__version__ + f" ({torch.get_num_threads()} threads)", torch_ops))
    except ImportError:
        print("pytorch: not installed", file=sys.stderr)
    try:
        import jax

        found.append(("jax " + jax.__version__ + " (jit)", jax_ops))
    except ImportError:
        print("jax: not installed", file=sys.stderr)
    return found


def op_bytes(op, rows, cols, size=4):
    """Bytes an operation reads: kl reads two inputs, ce the labels too."""
    return rows * cols * size * (2 if op == "kl" else 1) + (4 * rows if op == "ce" else 0)


def row(who, op, rows, cols, dtype, seconds, nbytes):
    print(f"{who:<40} {op:<4} {rows:>6}x{cols:<5} {dtype:<4} {seconds * 1e3:>9.2f} ms {nbytes / seconds / 1e9:>7.2f} GB/s")


def in_memory(args):
    rng = np.random.default_rng(0)
    print(f"{'who':<40} {'op':<4} {'shape':>12} {'type':<4} {'time':>12} {'speed':>12}")
    for rows, cols in SHAPES:
        x = rng.uniform(-4, 4, (rows, cols)).astype(np.float32)
        q = rng.uniform(-4, 4, (rows, cols)).astype(np.float32)
        y = rng.integers(0, cols, rows).astype(np.int32)
        dst = np.empty_like(x)
        copy = median_seconds(lambda: np.copyto(dst, x), args.iters)
        row("numpy copy (roofline)", "copy", rows, cols, "f32", copy, x.nbytes)
        for who, make in peers():
            ops = make(x, q, y)
            for op in OPS:
                row(who, op, rows, cols, "f32", median_seconds(ops[op], args.iters), op_bytes(op, rows, cols))
        bench = [args.xent, "bench", "--device", "cpu", "--json", "--iters", str(args.iters)]
        bench += ["--shapes", f"{rows}x{cols}", "--ops", ",".join(OPS), "--dtypes", "f32,f16"]
        out = subprocess.run(bench, check=True, capture_output=True, text=True).stdout
        for line in map(json.loads, out.splitlines()):
            who = line["adapter"]
            row(who, line["op"], rows, cols, line["dtype"], line["seconds"], line["bytes"])
            if line["op"] == "lse":
                # the engine's own roofline: a parallel copy of the same bytes
                row(who, "copy", rows, cols, line["dtype"], line["copy_seconds"], line["bytes"])


def e2e(args):
    logits, labels = args.e2e
    print(f"{'who':<40} {'seconds':>9} {'mean':>12}")
    runs = []
    for _ in range(args.iters):
        t = time.perf_counter()
        out = subprocess.run([args.xent, "ce", "--logits", logits, "--labels", labels, "--device", "cpu", "--json"],
                             check=True, capture_output=True, text=True).stdout
        runs.append((time.perf_counter() - t, json.loads(out)["value"]))
    s, v = sorted(runs)[len(runs) // 2]
    print(f"{'xent ce --device cpu':<40} {s:>9.3f} {v:>12.6f}")
    here = __file__.rsplit("/", 1)[0]
    runs = []
    for _ in range(args.iters):
        out = subprocess.run([sys.executable, f"{here}/numpy_ce.py", logits, labels], check=True,
                             capture_output=True, text=True).stdout
        line = json.loads(out)
        runs.append((line["seconds"], line["mean"]))
    s, v = sorted(runs)[len(runs) // 2]
    print(f"{'numpy loop (benches/numpy_ce.py)':<40} {s:>9.3f} {v:>12.6f}")
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        print("jax: not installed", file=sys.stderr)
        return

    @jax.jit
    def ce_sum(a, b):
        l = jax.nn.logsumexp(a, axis=1)
        return (l - jnp.take_along_axis(a, b[:, None], axis=1)[:, 0]).sum()

    def jax_loop(chunk=8192):
        t = time.perf_counter()
        x, yy = np.load(logits, mmap_mode="r"), np.load(labels, mmap_mode="r")
        total = 0.0
        for s in range(0, x.shape[0], chunk):
            a = np.asarray(x[s:s + chunk], dtype=np.float32)
            b = np.asarray(yy[s:s + chunk], dtype=np.int32)
            total += float(ce_sum(a, b))
        return time.perf_counter() - t, total / x.shape[0]

    jax_loop()  # compile (the last chunk's shape too)
    s, v = sorted(jax_loop() for _ in range(args.iters))[args.iters // 2]
    print(f"{'jax jit loop (8192-row chunks)':<40} {s:>9.3f} {v:>12.6f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--xent", default="target/release/xent")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--e2e", nargs=2, metavar=("LOGITS", "LABELS"))
    args = p.parse_args()
    if args.e2e:
        e2e(args)
    else:
        in_memory(args)


if __name__ == "__main__":
    main()

"""The Python package's speed, against what a Python user writes instead.

    python benches/python_ce.py [--rows 8192] [--cols 4096] [--repeat 7]
                                [--file-rows 0] [--files-only] [--xent target/release/xent]

1. `xent.cross_entropy` on a [rows, cols] float32 NumPy array (the whole call: argument
   checks, upload, kernel, reduction, readback), against NumPy's stable log-sum-exp
   cross-entropy and PyTorch's `F.cross_entropy` on the CPU (where PyTorch is installed),
   and the CPU path of the package; the median of `--repeat` runs after one warm-up. With
   `--xent`, `xent bench` is run on the same shape for the kernel's own device time.
2. With `--file-rows N`, `xent.evaluate_files` on an [N, 1000] float32 file against
   `xent ce --logits --labels --json` on the same files (page cache warm, alternating runs).
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np

import xent


def median_seconds(f, repeat):
    f()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def numpy_ce(x, y):
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - x[np.arange(x.shape[0]), y]))


def emit(**fields):
    print(json.dumps(fields), flush=True)


def arrays(args):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.rows, args.cols), dtype=np.float32) * 3
    y = rng.integers(0, args.cols, args.rows)
    shape = f"{args.rows}x{args.cols}"
    ctx = xent.default_context()
    base = median_seconds(lambda: xent.cross_entropy(x, y, context=ctx), args.repeat)
    emit(what="xent.cross_entropy", shape=shape, device=ctx.adapter, seconds=base, gbps=x.nbytes / base / 1e9)
    t = median_seconds(lambda: numpy_ce(x, y), args.repeat)
    emit(what="numpy stable lse", shape=shape, seconds=t, ratio=t / base)
    try:
        import torch
        import torch.nn.functional as F

        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        with torch.inference_mode():
            t = median_seconds(lambda: F.cross_entropy(xt, yt).item(), args.repeat)
        emit(what="torch F.cross_entropy (cpu)", shape=shape, threads=torch.get_num_threads(), seconds=t,
             ratio=t / base)
    except ImportError:
        emit(what="torch F.cross_entropy (cpu)", skipped="PyTorch is not installed")
    if args.cpu:
        t = median_seconds(lambda: xent.cross_entropy(x, y, context="cpu"), 1)
        emit(what="xent.cross_entropy (cpu path)", shape=shape, seconds=t, ratio=t / base)
    if args.xent:
        out = subprocess.run([args.xent, "bench", "--shapes", shape, "--ops", "ce", "--dtypes", "f32", "--json"],
                             capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            emit(what="xent bench", **json.loads(line))


def files(args):
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        xp, yp = os.path.join(d, "x.npy"), os.path.join(d, "y.npy")
        x = np.lib.format.open_memmap(xp, mode="w+", dtype=np.float32, shape=(args.file_rows, 1000))
        for s in range(0, args.file_rows, 50_000):
            n = min(50_000, args.file_rows - s)
            x[s:s + n] = rng.standard_normal((n, 1000), dtype=np.float32) * 3
        x.flush()
        del x
        np.save(yp, rng.integers(0, 1000, args.file_rows))
        ours, cli = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            xent.evaluate_files(xp, yp)
            ours.append(time.perf_counter() - t)
            if args.xent:
                t = time.perf_counter()
                subprocess.run([args.xent, "ce", "--logits", xp, "--labels", yp, "--json"], check=True,
                               capture_output=True)
                cli.append(time.perf_counter() - t)
        shape = f"{args.file_rows}x1000"
        emit(what="xent.evaluate_files", shape=shape, seconds=float(np.median(ours)), runs=ours)
        if cli:
            emit(what="xent ce (command line)", shape=shape, seconds=float(np.median(cli)), runs=cli,
                 ratio=float(np.median(ours) / np.median(cli)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--file-rows", type=int, default=0)
    p.add_argument("--dir", default=None, help="where the temporary files go")
    p.add_argument("--xent", default=None, help="the xent command line (a release build)")
    p.add_argument("--cpu", action="store_true", help="also time the CPU path")
    p.add_argument("--files-only", action="store_true", help="only the file measurement")
    args = p.parse_args()
    if not args.files_only:
        arrays(args)
    if args.file_rows:
        files(args)


if __name__ == "__main__":
    main()

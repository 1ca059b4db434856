"""The peers of `xent bench --linear` on a CUDA GPU: the loss of a linear head and its
gradients (of H and W), as a training step computes them, by PyTorch's unfused
`F.linear` + `F.cross_entropy` and by Liger-Kernel's fused linear cross-entropy.

    python3 benches/linear_ce_torch.py 8192 4096 128256 bf16

Prints one JSON line per peer: median seconds of forward + backward (CUDA events), the
GFLOP/s over 6·N·V·d, and the peak memory the step allocates beyond its inputs
(torch.cuda.max_memory_allocated). Compare with
`xent bench --linear 8192x4096x128256 --dtypes bf16 --json` on the same GPU.
"""

import json
import sys

import torch
import torch.nn.functional as F


def step_unfused(h, w, y):
    return F.cross_entropy(F.linear(h, w).float(), y)


def peers():
    yield "torch", step_unfused
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return
    liger = LigerFusedLinearCrossEntropyLoss()
    yield "liger", lambda h, w, y: liger(w, h, y)


def measure(name, step, h, w, y, iters=5):
    times = []
    for i in range(iters + 1):
        h.grad = w.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step(h, w, y).backward()
        end.record()
        torch.cuda.synchronize()
        if i > 0:  # the first run warms up
            times.append(start.elapsed_time(end) / 1e3)
        peak = torch.cuda.max_memory_allocated() - base
    seconds = sorted(times)[len(times) // 2]
    n, d = h.shape
    v = w.shape[0]
    print(json.dumps({"peer": name, "rows": n, "d": d, "classes": v, "dtype": str(h.dtype),
                      "seconds": seconds, "gflops": 6 * n * v * d / seconds / 1e9,
                      "peak_extra_bytes": peak, "device": torch.cuda.get_device_name()}))


def main():
    n, d, v = (int(a) for a in sys.argv[1:4])
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[sys.argv[4]]
    g = torch.Generator(device="cuda").manual_seed(0)
    h = (torch.rand(n, d, device="cuda", generator=g) * 2 - 1).div(d ** 0.5).to(dtype).requires_grad_()
    w = (torch.rand(v, d, device="cuda", generator=g) * 2 - 1).div(d ** 0.5).to(dtype).requires_grad_()
    y = torch.randint(0, v, (n,), device="cuda", generator=g)
    for name, step in peers():
        measure(name, step, h, w, y)


if __name__ == "__main__":
    main()

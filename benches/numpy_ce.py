"""What a user writes instead of `xent ce`: NumPy over the .npy files in row chunks.

    python3 benches/numpy_ce.py LOGITS.npy LABELS.npy [CHUNK_ROWS]

Memory-maps the logits, and per chunk forms the stable log-sum-exp, the loss against the
labels and the argmax; prints the mean loss, the accuracy and the seconds, as one JSON line
(the time of the whole loop, file to result, page cache as it is).
"""

import json
import sys
import time

import numpy as np

t0 = time.perf_counter()
logits = np.load(sys.argv[1], mmap_mode="r")
labels = np.load(sys.argv[2], mmap_mode="r")
chunk = int(sys.argv[3]) if len(sys.argv) > 3 else 8192
total, hits = 0.0, 0
for s in range(0, logits.shape[0], chunk):
    x = np.asarray(logits[s:s + chunk], dtype=np.float32)
    y = np.asarray(labels[s:s + chunk])
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    total += float((lse - x[np.arange(len(y)), y]).sum(dtype=np.float64))
    hits += int((x.argmax(axis=1) == y).sum())
rows = logits.shape[0]
print(json.dumps({"mean": total / rows, "accuracy": hits / rows, "seconds": time.perf_counter() - t0}))

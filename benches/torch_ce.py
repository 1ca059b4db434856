"""What a PyTorch user writes instead of `xent ce`: a row-chunked loop over the .npy files.

    python3 benches/torch_ce.py LOGITS.npy LABELS.npy [CHUNK_ROWS]

Memory-maps the logits, and per chunk takes `F.cross_entropy(reduction="sum")` and the
argmax on the CPU (all cores, torch's default threads); prints the mean loss, the accuracy
and the seconds, as one JSON line (the time of the whole loop, file to result, page cache as
it is).
"""

import json
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

# the chunks are read-only views of the mapping, which the loop only reads
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
t0 = time.perf_counter()
logits = np.load(sys.argv[1], mmap_mode="r")
labels = np.load(sys.argv[2], mmap_mode="r")
chunk = int(sys.argv[3]) if len(sys.argv) > 3 else 8192
total, hits = 0.0, 0
with torch.inference_mode():
    for s in range(0, logits.shape[0], chunk):
        x = torch.from_numpy(np.ascontiguousarray(logits[s:s + chunk], dtype=np.float32))
        y = torch.from_numpy(np.asarray(labels[s:s + chunk], dtype=np.int64))
        total += float(F.cross_entropy(x, y, reduction="sum").double())
        hits += int((x.argmax(dim=1) == y).sum())
rows = logits.shape[0]
print(json.dumps({"mean": total / rows, "accuracy": hits / rows, "seconds": time.perf_counter() - t0,
                  "threads": torch.get_num_threads()}))

"""Ctrl-C stops a long evaluation between chunks with KeyboardInterrupt: a signal sent to
a child process running one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

CHILD = textwrap.dedent("""
    import signal, sys, time, xent
    # a parent that ignores SIGINT (a shell's background job) passes that on, and Python
    # then installs no KeyboardInterrupt handler: install it, as an interactive run has it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    device, x, y = sys.argv[1:4]
    def progress(done, total):
        print("chunk", done, total, flush=True)
        time.sleep(0.02)
    try:
        xent.evaluate_files(x, y, chunk_rows=500, progress=progress, context=device)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    print("finished", flush=True)
""")


@pytest.mark.parametrize("device", ["auto", "cpu"])
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_stops_between_chunks(tmp_path, device):
    rng = np.random.default_rng(7)
    np.save(tmp_path / "x.npy", rng.standard_normal((200_000, 16), dtype=np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 16, 200_000))
    child = subprocess.Popen([sys.executable, "-c", CHILD, device, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline()
        assert first.startswith("chunk"), first + child.stderr.read()
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 3, (out, err)
    assert "interrupted" in out and "finished" not in out
    assert "panicked" not in err
    assert time.monotonic() - started < 30
    assert os.path.exists(tmp_path / "x.npy")

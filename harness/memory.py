"""Peak-memory measurement around one request.

CUDA: the allocator's max_memory_allocated since a reset. CPU: the process's resident set size, sampled every
few milliseconds by a background thread (the kernel's own high-water mark, ru_maxrss, never goes down, so it
cannot give a per-request figure).
"""
from __future__ import annotations

import os
import threading

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return None


class PeakMemory:
    """`with PeakMemory(device) as pm: ...` then `pm.peak` (bytes or None) and `pm.kind` ("rss" or "cuda")."""

    def __init__(self, device: str = "cpu", interval_s: float = 0.005):
        self.device = str(device)
        self.interval_s = interval_s
        self.kind = "cuda" if self.device.startswith("cuda") else "rss"
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = current_rss()
            if rss is not None:
                self.peak = max(self.peak or 0, rss)

    def __enter__(self) -> "PeakMemory":
        if self.kind == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = current_rss()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.kind == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            rss = current_rss()
            if rss is not None:
                self.peak = max(self.peak or 0, rss)

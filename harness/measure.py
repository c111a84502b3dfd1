"""Peak memory measured around one request.

Measurement (`PeakMemory`). CUDA: the allocator's max_memory_allocated since a reset. CPU (Linux): the kernel's own
high-water mark of the process's resident set, VmHWM in /proc/self/status, which writing "5" to
/proc/self/clear_refs resets to the current RSS (Linux ≥ 4.0) — so the figure is exact, however briefly the peak
lasted. The reset is process-wide: blocks must not nest. Where clear_refs cannot be written (another OS, a
locked-down /proc), the RSS is sampled every few milliseconds by a background thread instead (a lower bound: a
peak shorter than the interval is missed).
"""
from __future__ import annotations

import os
import re
import threading

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def current_rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return None


def high_water_mark() -> int | None:
    """The process's peak RSS since start or since the last `reset_high_water_mark()` (VmHWM), in bytes."""
    try:
        with open(_STATUS) as f:
            m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def reset_high_water_mark() -> bool:
    """Reset VmHWM to the current RSS; False where this system does not allow it."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    return high_water_mark() is not None


class PeakMemory:
    """`with PeakMemory(device) as pm: ...` then `pm.peak` (bytes or None) and `pm.kind` ("rss" or "cuda").

    On CPU the peak is the process's (every thread's) resident set, not this block's allocations alone: the
    weights, the runtime and whatever else is resident count too. `pm.exact` says whether the kernel's high-water
    mark gave it (True) or the polling fallback did (False).
    """

    def __init__(self, device: str = "cpu", interval_s: float = 0.005):
        self.device = str(device)
        self.interval_s = interval_s
        self.kind = "cuda" if self.device.startswith("cuda") else "rss"
        self.peak: int | None = None
        self.exact = self.kind == "cuda"
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
        elif reset_high_water_mark():
            self.exact = True
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
        elif self.exact:
            self.peak = high_water_mark()
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            rss = current_rss()
            if rss is not None:
                self.peak = max(self.peak or 0, rss)

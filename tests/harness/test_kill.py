"""Crash-proof resume: a real run killed with SIGKILL at seeded random moments, several times, then finished. No
finished sample is lost or duplicated, and the records equal those of an uninterrupted run (greedy decoding is
deterministic); run.json stays valid JSON throughout (it is replaced atomically)."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

from harness.records import read_records


def _cmd(model, out):
    return [sys.executable, "-m", "harness.cli", "passkey", "-m", model, "-l", "512,640", "-d",
            "0.1,0.3,0.5,0.7,0.9", "-n", "4", "--max-new-tokens", "4", "--no-progress", "--out", str(out)]


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tiny_llama_path, tmp_path):
    clean = tmp_path / "clean"
    subprocess.run(_cmd(tiny_llama_path, clean), check=True, capture_output=True)
    expected = {r.key: r.prediction for r in read_records(clean)}
    assert len(expected) == 40
    per_sample = sum(r.latency_s for r in read_records(clean)) / 40  # this machine's time for one sample

    out = tmp_path / "killed"
    results = out / "results.jsonl"
    rng = random.Random(0)
    seen = []
    for _ in range(4):
        before = len(read_records(out)) if results.exists() else 0
        target = before + rng.randint(1, 4)  # kill once this many records exist, i.e. mid-run, seeded
        proc = subprocess.Popen(_cmd(tiny_llama_path, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and (not results.exists() or results.read_bytes().count(b"\n") < target):
            time.sleep(0.02)
        time.sleep(rng.uniform(0, per_sample))  # anywhere inside the next sample, or its write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        json.loads((out / "run.json").read_text())  # never half-written
        lines = [ln for ln in results.read_text().splitlines() if ln.strip()]
        keys = [tuple(json.loads(ln)[k] for k in ("context_length", "depth", "sample_id")) for ln in lines
                if ln.strip().endswith("}")]
        assert len(keys) == len(set(keys)), "a sample was written twice"
        seen.append(len(keys))
    assert 0 < seen[0] and seen == sorted(seen) and seen[-1] < 40, seen  # killed mid-run each time, progress kept
    subprocess.run(_cmd(tiny_llama_path, out), check=True, capture_output=True)
    got = {r.key: r.prediction for r in read_records(out)}
    assert got == expected
    assert len(read_records(out)) == 40

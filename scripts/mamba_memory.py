"""Peak memory of the Mamba runner vs prompt length: a tiny random Mamba-2 answers passkey prompts of 16k, 64k and
128k tokens; with chunked prefill its peak RSS should not grow with length (the recurrent state is constant).

Usage: .venv/bin/python scripts/mamba_memory.py [--lengths 16k,64k,128k] [--out runs/mamba-memory]
The model is random (it cannot find the key); this measures memory and time, not accuracy.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def make_model(path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, Mamba2Config, Mamba2ForCausalLM

    from harness.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2").path)
    torch.manual_seed(0)
    cfg = Mamba2Config(vocab_size=len(tok), hidden_size=128, num_hidden_layers=4, num_heads=8, head_dim=32,
                       state_size=16, expand=2, n_groups=1, chunk_size=64, eos_token_id=2, bos_token_id=1,
                       pad_token_id=2, tie_word_embeddings=True)
    Mamba2ForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="16k,64k,128k")
    ap.add_argument("--out", default="runs/mamba-memory")
    args = ap.parse_args()
    model = Path(tempfile.mkdtemp()) / "tiny-mamba2"
    make_model(model)
    # One process per length: the process's peak RSS is then the figure for that length alone.
    for n in args.lengths.split(","):
        subprocess.run([sys.executable, "-m", "harness.cli", "passkey", "--model", str(model), "--lengths", n,
                        "--no-progress", "--out", f"{args.out}/{n}"], check=True)
    from harness.records import read_records

    print("| prompt tokens | peak RSS (MiB) | recurrent state (KiB) | prefill (s) |")
    print("|---:|---:|---:|---:|")
    for n in args.lengths.split(","):
        for r in read_records(f"{args.out}/{n}"):
            print(f"| {r.tokens} | {r.peak_mem_bytes / 2**20:.0f} | {r.cache_bytes / 2**10:.1f} | {r.prefill_s:.1f} |")


if __name__ == "__main__":
    main()

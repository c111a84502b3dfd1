"""Are a model's keyed-mqar misses on blocks holding look-alike values? Reads the results.jsonl of a `longctx
retrieval -t mqar-keyed ...` run, rebuilds every prompt from its record (task, seed, length, depth, sample id,
haystack) with the model's tokenizer, and counts misses on blocks where two values share their first two digits
("960", "961") and on the others (docs/RESULTS.md §7.3: every miss of rope-conv was on the former).

Usage: .venv/bin/python scripts/lookalike_misses.py runs/bl9-table/rope-conv-63-mqar-keyed --model runs/bl9-rc/rope-conv
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.baselines.probes import lookalike_misses  # noqa: E402
from harness.errors import UserError  # noqa: E402


def fail(message: str) -> None:
    """Bad input: one line, exit 2."""
    print(f"lookalike_misses: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a retrieval run directory (its results.jsonl) of an mqar task")
    ap.add_argument("--model", required=True, help="the checkpoint whose tokenizer built the prompts")
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    path = Path(args.run_dir) / "results.jsonl"
    if not path.is_file():
        fail(f"{path}: no such results file")
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        fail(f"{path}: not a results file ({e})")
    if not records or any(not str(r.get("task", "")).startswith("mqar") for r in records):
        fail(f"{path}: not the records of an mqar task (tasks: {sorted({r.get('task') for r in records})})")
    if not Path(args.model).is_dir():
        fail(f"{args.model}: no such checkpoint directory")
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except (OSError, ValueError) as e:
        fail(f"{args.model}: no tokenizer there ({str(e).splitlines()[0]})")
    try:
        c = lookalike_misses(records, tokenizer)
    except UserError as e:
        fail(str(e))
    print(f"{args.run_dir}: look-alike blocks missed {c[True][1]}/{c[True][0]}, others missed "
          f"{c[False][1]}/{c[False][0]}")


if __name__ == "__main__":
    main()

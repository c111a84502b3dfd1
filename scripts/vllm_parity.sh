#!/usr/bin/env bash
# Parity of the HF and vLLM runners on SmolLM2: the same passkey grid (2k and 4k, 5 samples per cell) through both,
# for none / pi / ntk / yarn, then the agreement of their greedy answers. Resumable (each run directory resumes).
# Usage: scripts/vllm_parity.sh [OUT]
set -euo pipefail
OUT=${1:-runs/parity}
LONGCTX=${LONGCTX:-.venv/bin/longctx}
PY=${PY:-.venv/bin/python}
for ext in none pi ntk yarn; do
  params=(); [ "$ext" = none ] || params=(-E factor=2)
  for runner in hf vllm; do
    "$LONGCTX" passkey --model smollm2 --lengths 2k,4k --depths 0.5 --samples 5 --seed 0 --no-progress \
      --runner "$runner" --extension "$ext" "${params[@]}" --out "$OUT/$runner-$ext"
  done
done
for ext in none pi ntk yarn; do
  "$PY" scripts/compare_runners.py "$OUT/hf-$ext" "$OUT/vllm-$ext"
done

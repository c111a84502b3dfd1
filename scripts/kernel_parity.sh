#!/usr/bin/env bash
# Parity of the kernel runner with the HF runner on SmolLM2 at 2k: the same passkey prompts (5 depths) through both,
# for none / yarn / sinks / selfextend / alibi, then the agreement of their greedy answers (compare_runners.py).
# Sinks use a 1,020-token window so that eviction happens inside a 2k prompt. Resumable.
# Usage: scripts/kernel_parity.sh [OUT]
set -euo pipefail
OUT=${1:-runs/kernel-parity}
LONGCTX=${LONGCTX:-.venv/bin/longctx}
PY=${PY:-.venv/bin/python}
METHODS="none yarn sinks selfextend alibi"
params() {
  case $1 in
    none|alibi) ;;
    yarn)       echo "-E factor=2" ;;
    sinks)      echo "-E sink_tokens=4 -E window=1020" ;;
    selfextend) echo "-E group=4 -E window=512" ;;
  esac
}
for ext in $METHODS; do
  for runner in hf kernel; do
    # shellcheck disable=SC2046
    "$LONGCTX" passkey --model smollm2 --lengths 2k --depths 0.1,0.3,0.5,0.7,0.9 --samples 1 --seed 0 --no-progress \
      --runner "$runner" --extension "$ext" $(params "$ext") --out "$OUT/$runner-$ext"
  done
done
for ext in $METHODS; do
  "$PY" scripts/compare_runners.py "$OUT/hf-$ext" "$OUT/kernel-$ext"
done

#!/usr/bin/env bash
# Evidence for the extensions issue: SmolLM2 (8192-token window) passkey at 2x the window for each method.
# Resumable: each line resumes its own run directory. Usage: scripts/extensions_passkey.sh [OUT] [LENGTH] [METHODS...]
# RUNNER=kernel runs every method through the kernel runner (the attention-level ones on kernels/cpu, not the oracle).
set -euo pipefail
OUT=${1:-runs/extensions}
LEN=${2:-16k}
shift 2 || true
METHODS=${*:-"none pi ntk dynamic-ntk yarn"}
LONGCTX=${LONGCTX:-.venv/bin/longctx}
COMMON=(--model smollm2 --depths 0.2,0.5,0.8 --samples 1 --seed 0 --no-progress --runner "${RUNNER:-hf}")

"$LONGCTX" passkey "${COMMON[@]}" --lengths 8k --out "$OUT/none-8k"   # control inside the window
for m in $METHODS; do
  case $m in
    none)         args=() ;;
    pi|ntk|yarn|dynamic-ntk) args=(-E factor=2) ;;
    selfextend)   args=(-E group=4 -E window=1024) ;;
    sinks)        args=(-E sink_tokens=4 -E window=4092) ;;
    *) echo "unknown method $m" >&2; exit 2 ;;
  esac
  "$LONGCTX" passkey "${COMMON[@]}" --lengths "$LEN" --extension "$m" "${args[@]}" --out "$OUT/$m-$LEN"
done
"$LONGCTX" report "$OUT" -o "$OUT/report.html" --title "SmolLM2 passkey: extension methods at $LEN"

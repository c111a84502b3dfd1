#!/usr/bin/env bash
# The mission's lengths through the kernel runner on SmolLM2 (docs/RESULTS.md §8). Resumable: each run directory
# resumes. Stages (run in this order, any subset): sinks128k, 32k, 64k.
#   sinks128k  sinks S = 4, W = 4092 at 128k, depths 0.5 (outside the window) and 0.99 (inside): the control
#   32k / 64k  SelfExtend, YaRN and dynamic NTK sized for the length, depths 0.1 / 0.5 / 0.9 (n = 3 per cell)
# Usage: scripts/kernel_runner_lengths.sh [OUT] [STAGES...]
set -euo pipefail
OUT=${1:-runs/kernel-lengths}
shift || true
STAGES=${*:-"sinks128k 32k 64k"}
LONGCTX=${LONGCTX:-.venv/bin/longctx}
COMMON=(--model smollm2 --runner kernel --samples 1 --seed 0 --no-progress)
for stage in $STAGES; do
  case $stage in
    sinks128k)
      "$LONGCTX" passkey "${COMMON[@]}" --lengths 128k --depths 0.5,0.99 -e sinks -E sink_tokens=4 -E window=4092 \
        --out "$OUT/sinks-128k" ;;
    32k|64k)
      # YaRN / dynamic NTK: factor = length / 8k; SelfExtend: G so that (L − N) / G + N stays inside 8k.
      if [ "$stage" = 32k ]; then f=4; g=8; else f=8; g=16; fi
      for m in yarn dynamic-ntk selfextend; do
        case $m in
          selfextend) args=(-E group=$g -E window=1024) ;;
          *)          args=(-E factor=$f) ;;
        esac
        "$LONGCTX" passkey "${COMMON[@]}" --lengths "$stage" --depths 0.1,0.5,0.9 -e "$m" "${args[@]}" \
          --out "$OUT/$m-$stage"
      done ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done

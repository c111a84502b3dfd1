#!/usr/bin/env bash
# Issue 34's SmolLM2 evidence, in the order it was run (docs/RESULTS.md section 13). Each command resumes where it
# stopped. About 1.5 h on the slower 2-core CPU (122 GFLOP/s), then issue 33's grid (which records diagnostics for
# YaRN, dynamic NTK and SelfExtend at 16k).
set -euo pipefail
L=${LONGCTX:-longctx}
DEPTHS6=0.1,0.26,0.42,0.58,0.74,0.9
DEPTHS10=0.05,0.15,0.25,0.35,0.45,0.55,0.65,0.75,0.85,0.95
# 1. the heads that retrieve at 4k, ranked on prompts of another seed than the ablation's
$L passkey -m smollm2 -l 4k -d $DEPTHS6 --seed 1 -r kernel --diagnostics answer --no-progress -o runs/issue34-rank-4k
# 2. the causal check at 4k, n = 20 a configuration: no head removed, the top 5 / 10 by retrieval score, 5 / 10 random
$L passkey -m smollm2 -l 4k -d $DEPTHS10 -n 2 -r kernel --no-progress -o runs/issue34-ablate/none
for k in 5 10; do
  $L passkey -m smollm2 -l 4k -d $DEPTHS10 -n 2 -r kernel --ablate-heads top:$k --heads-from runs/issue34-rank-4k \
    --no-progress -o runs/issue34-ablate/top$k
  $L passkey -m smollm2 -l 4k -d $DEPTHS10 -n 2 -r kernel --ablate-heads random:$k --no-progress \
    -o runs/issue34-ablate/random$k
done
# 3. unscaled at 4k, 8k, 16k; sinks with the needle outside / inside its window at 16k
$L run experiments/issue34_why_passkey.yaml -y --no-progress
$L run experiments/issue34_sinks_16k.yaml -y --no-progress
# 4. the report
$L report runs/issue34-why runs/issue34-sinks runs/issue34-ablate runs/issue34-rank-4k runs/issue33-passkey-16k \
  -o docs/issue34_report.html

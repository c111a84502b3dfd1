"""Where does a recall-recipe checkpoint stand, drill by drill? Teacher-forced accuracy of a `longctx
train-baselines --recipe recall` model on fresh training-style sequences (the recipe's stream with another seed),
split by the kind of drill each scored token belongs to: echoes ("key digit key"), recitations (a block and the block
again), passkeys, and mqar questions by how many keys they ask. Token accuracy, and the share of whole answers right
(an answer: a run of scored tokens).

Usage: .venv/bin/python scripts/recall_by_drill.py runs/bl-alibi-echo/alibi [--sequences 64] [--seed 1]
"""
import argparse
import dataclasses
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.baselines.config import RECALL_STAGES, TrainConfig  # noqa: E402
from harness.baselines.data import recall_stream  # noqa: E402


def kind_of(text: str) -> str:
    if text.startswith("Each word, a digit and the word again:"):
        return "echo"
    if "The list again:" in text:
        return "recitation"
    if "pass key" in text:
        return "passkey"
    if "phone book" in text:
        return "phone book"
    m = re.search(r"What (?:is the number|are the numbers) of (.*?)(?:, in that order)?\?", text)
    return f"mqar, {1 + len(re.findall(r',| and ', m.group(1)))} asked" if m else "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--sequences", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1, help="added to the training seed: data the model never saw")
    ap.add_argument("--stage", type=int, default=None, help="curriculum stage (default: where training stopped)")
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = json.loads((Path(a.model) / "longctx_training.json").read_text())
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in info["config"].items() if k in fields})
    cfg = dataclasses.replace(cfg, seed=cfg.seed + a.seed)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model).eval()
    stream, set_stage = recall_stream(tok, cfg)
    stage = a.stage if a.stage is not None else (info["curve"][-1]["stage"] if info.get("curve") else 0)
    set_stage(min(stage, len(RECALL_STAGES) - 1))
    tokens, answers = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0])
    for _ in range(a.sequences):
        ids, scored = stream()
        with torch.no_grad():
            pred = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1).tolist()
        start = 0
        for end in [i for i, t in enumerate(ids) if t == tok.eos_token_id] + [len(ids)]:
            kind = kind_of(tok.decode(ids[start:end]))
            run = []
            for i in range(max(start, 1), end):
                if scored[i]:
                    ok = pred[i - 1] == ids[i]
                    tokens[kind][0] += ok
                    tokens[kind][1] += 1
                    run.append(ok)
                if run and (i + 1 == end or not scored[i + 1]):
                    answers[kind][0] += all(run)
                    answers[kind][1] += 1
                    run = []
            start = end + 1
    print(f"{a.model}: step {info['steps_done']}, stage {stage}, {a.sequences} sequences of {cfg.train_length}")
    for kind in sorted(tokens):
        (tr, tn), (ar, an) = tokens[kind], answers[kind]
        print(f"  {kind:16s} tokens {tr / tn:.2f} ({tn})   whole answers {ar / an:.2f} ({an})")


if __name__ == "__main__":
    main()

"""How fast does a baseline architecture learn associative recall when nothing else is in the way? Pure MQAR in
token ids (after Arora et al. 2023, "Zoology"): a block of 2-8 key-value pairs (100 key ids, `--values` value ids),
then the same pairs again in a random order; the loss is on the second copy's values, every one of which is what
followed the same key in the block. No tokenizer, no filler, no question format: what is left is the induction
mechanism lookup needs. Prints teacher-forced accuracy on those values every 25 steps (chance: 1 / --values, a bit
more for a model that only learns which values are present).

Usage: .venv/bin/python scripts/mqar_learning_speed.py [--arch rope] [--layers 4] [--lr 3e-3] [--length 128]
       [--values 10] [--steps 600] [--threads 1] [--disjoint] [--replace] [--echo 0.3] [--ordered 0.3]
       [--digits 3] [--init 0.02] [--theta 1e6] [--bias] [--text 0.2,0.8 --length 256]
Findings (docs/RESULTS.md §7.6): the first "plateau near 0.5" was elimination, not lookup; transformers' 0.02 init
slows every mechanism at 128 wide; ALiBi learns lookup in ~150 steps, RoPE has not in 1,100.
"""
import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.baselines.config import ARCHITECTURES, TrainConfig  # noqa: E402
from harness.baselines.models import build_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="rope", choices=ARCHITECTURES)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--length", type=int, default=128, help="tokens per row; rows per step = 4096 / length")
    ap.add_argument("--values", type=int, default=10, help="distinct value ids (10: like one digit)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--echo", type=float, default=0.0,
                    help="share of drills that are 'key value key' triples, loss on the echoed key (a previous-token "
                         "head at value positions, which lookup composes with)")
    ap.add_argument("--init", type=float, default=0.0,
                    help="initial weight std (0: 1/sqrt(hidden) = 0.088; transformers' default is 0.02)")
    ap.add_argument("--theta", type=float, default=10000.0, help="RoPE model: the rotation's base")
    ap.add_argument("--bias", action="store_true", help="RoPE model: biases on q, k, v, o")
    ap.add_argument("--ordered", type=float, default=0.0,
                    help="share of drills whose second part is the block in its own order (scored as 'copy')")
    ap.add_argument("--digits", type=int, default=1,
                    help="ids per value (3: like the recipe's three-digit numbers); echo and copy drills keep one")
    ap.add_argument("--replace", action="store_true",
                    help="the second part asks n keys drawn with replacement, not each key once in a random order")
    ap.add_argument("--disjoint", action="store_true", help="no key in two drills of one row (the recipe's packing)")
    ap.add_argument("--text", default=None, metavar="ECHO,RECITE",
                    help="the recall recipe's own text drills and tokenizer instead of token ids, with these shares "
                         "of echo and recitation drills (the rest: its questions), rows of --length >= 256 tokens; "
                         "'recall' is then the accuracy on scored digit tokens (and on the first digit of each value, "
                         "which only lookup finds), 'echo' on scored words")
    a = ap.parse_args()
    if min(a.layers, a.length, a.values, a.steps, a.threads, a.digits) < 1 or not a.lr > 0:
        ap.error("--layers, --length, --values, --steps, --threads and --digits must be >= 1 and --lr > 0")
    if not (0 <= a.echo <= 1 and 0 <= a.ordered <= 1 and a.init >= 0 and a.theta > 0):
        ap.error("--echo and --ordered must be shares in [0, 1], --init >= 0 (0: 1/sqrt(hidden)) and --theta > 0")
    torch.set_num_threads(a.threads)
    cfg = TrainConfig(recipe="recall", layers=a.layers, lr=a.lr, seed=a.seed, attention_bias=a.bias,
                      init_std=a.init, rope_theta=a.theta, train_length=max(256, a.length))
    text_batch = None
    if a.text is not None:
        try:
            echo_share, recite_share = (float(x) for x in a.text.split(","))
        except ValueError:
            ap.error("--text takes two shares, e.g. 0.3,0.7")
        if a.length < 256 or not (echo_share >= 0 and recite_share >= 0 and echo_share + recite_share <= 1):
            ap.error("--text needs --length >= 256 and two shares in [0, 1] that add up to at most 1")
        from harness.baselines import data

        data.ECHO_SHARE, data.RECITE_SHARE = echo_share, recite_share
        tok = data.train_tokenizer(cfg)
        stream, _ = data.recall_stream(tok, cfg)
        is_digit = torch.tensor([any(c.isdigit() for c in tok.decode([i])) for i in range(len(tok))])

        def text_batch() -> tuple[torch.Tensor, torch.Tensor]:  # kind: 100 a scored digit (recall), 2 a scored word
            rows = [stream() for _ in range(max(1, 4096 // a.length))]
            x = torch.tensor([ids for ids, _ in rows])
            scored = torch.tensor([s for _, s in rows])
            # a value's first digit (what lookup finds: 101) and the digits after it (copying on from there: 100)
            first = is_digit[x] & ~torch.nn.functional.pad(is_digit[x][:, :-1], (1, 0))
            return x, torch.where(scored, torch.where(is_digit[x], 100 + first.long(), 2), 0)
    if text_batch:
        model = build_model(a.arch, cfg, len(tok), {"bos": tok.bos_token_id, "eos": tok.eos_token_id,
                                                    "pad": tok.pad_token_id})
    else:
        model = build_model(a.arch, cfg, 2048, {"bos": 0, "eos": 1, "pad": 2})
    rng = random.Random(a.seed)
    keys, values = list(range(3, 103)), list(range(200, 200 + a.values))

    def drill(free: list[int]) -> tuple[list[int], list[int]]:  # ids, and per id 0 / 1 (a value asked) / 2 (an echo)
        n = min(rng.randint(2, 8), len(free))
        ks, vs = rng.sample(free, n), [rng.choice(values) for _ in range(n)]
        if rng.random() < a.echo:  # key value key: predicting the echo needs the key at the value's position
            return [t for k, v in zip(ks, vs) for t in (k, v, k)] + [1], [2 * (j % 3 == 2) for j in range(3 * n)] + [0]
        if a.disjoint:  # no key twice in a row: every question has one answer, the most recent match is not needed
            free[:] = [k for k in free if k not in ks]
        # every key asked once (elimination answers the last one), or n keys drawn with replacement (it cannot)
        order = [rng.randrange(n) for _ in range(n)] if a.replace else rng.sample(range(n), n)
        if rng.random() < a.ordered:  # the block again in its own order: a copy, the classic way induction forms
            ids = [t for k, v in zip(ks, vs) for t in (k, v)] + [1] + [t for k, v in zip(ks, vs) for t in (k, v)] + [1]
            return ids, [0] * (2 * n + 1) + [3 * (j % 2) for j in range(2 * n)] + [0]
        if a.digits > 1:  # a value of several ids (like a three-digit number): every one of them is asked
            vals = [[rng.choice(values) for _ in range(a.digits)] for _ in range(n)]
            block = [t for k, v in zip(ks, vals) for t in [k, *v]]
            asked = [t for i in order for t in [ks[i], *vals[i]]]
            kinds = [0 if j % (a.digits + 1) == 0 else 100 * n + order[j // (a.digits + 1)] for j in range(len(asked))]
            return block + [1] + asked + [1], [0] * (len(block) + 1) + kinds + [0]
        ids = [t for k, v in zip(ks, vs) for t in (k, v)] + [1] + [t for i in order for t in (ks[i], vs[i])] + [1]
        # an asked value's kind says how many pairs its drill has and where its key stood in the block: 100 n + i
        return ids, [0] * (2 * n + 1) + [(100 * n + order[j // 2]) * (j % 2) for j in range(2 * n)] + [0]

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        rows, masks = [], []
        for _ in range(max(1, 4096 // a.length)):
            ids, scored, free = [], [], list(keys)
            while len(ids) < a.length and len(free) >= 2:
                x, s = drill(free)
                ids, scored = ids + x, scored + s
            ids, scored = ids + [2] * (a.length - len(ids)), scored + [0] * (a.length - len(scored))
            rows.append(ids[:a.length])
            masks.append(scored[:a.length])
        return torch.tensor(rows), torch.tensor(masks)

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.95))
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        x, kind = text_batch() if text_batch else batch()
        out = model(input_ids=x, labels=x.masked_fill(kind == 0, -100))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0:
            with torch.no_grad():
                right = out.logits.argmax(-1)[:, :-1] == x[:, 1:]
                asked, k1 = kind[:, 1:] >= 100, kind[:, 1:]
                acc = [right[m].float().mean().item() for m in (asked, k1 == 2, k1 == 3, k1 == 101)]
            print(f"step {step} loss {out.loss.item():.3f} recall {acc[0]:.3f}"
                  + (f" (first digits {acc[3]:.3f})" if text_batch else "")
                  + (f" echo {acc[1]:.3f}" if a.echo or a.text else "") + (f" copy {acc[2]:.3f}" if a.ordered else "")
                  + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
            if step == a.steps and not text_batch:  # where lookup works: by pairs in the drill, and by the key's place in the block
                for name, of in (("pairs", k1 // 100), ("block place", k1 % 100)):
                    print(f"  by {name}: " + " ".join(
                        f"{v}:{right[asked & (of == v)].float().mean().item():.2f}"
                        for v in sorted(set(of[asked].tolist()))), flush=True)


if __name__ == "__main__":
    main()

"""The training loop: the same stream, optimiser and schedule for every architecture; one checkpoint each."""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable

from harness.baselines.config import ARCHITECTURES, TrainConfig
from harness.baselines.data import example_stream, train_tokenizer
from harness.baselines.models import build_model, count_parameters
from harness.errors import UserError


def train_one(arch: str, cfg: TrainConfig, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    import torch

    tokenizer = train_tokenizer(cfg)
    special = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id}
    model = build_model(arch, cfg, len(tokenizer), special)
    model.train()
    stream = example_stream(tokenizer, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))

    def lr_at(step: int) -> float:  # linear warm-up, cosine decay to 10 %
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    losses, t0, steps_done = [], time.perf_counter(), 0
    for step in range(cfg.steps):
        pairs = [stream() for _ in range(cfg.batch_size)]
        batch = torch.tensor([ids for ids, _ in pairs])  # (B, L)
        labels = batch.masked_fill(~torch.tensor([scored for _, scored in pairs]), -100)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=batch, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(round(loss.item(), 4))
        steps_done = step + 1
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"{arch} step {step}/{cfg.steps} loss {losses[-1]:.3f} ({time.perf_counter() - t0:.0f} s)")
        if time.perf_counter() - t0 > cfg.time_budget_s:
            log(f"{arch}: time budget {cfg.time_budget_s:.0f} s reached after {steps_done} steps")
            break
    model.eval()
    dest = out_dir / arch
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    info = {"architecture": arch, "model_type": model.config.model_type, "parameters": count_parameters(model),
            "config": dataclasses.asdict(cfg), "steps_done": steps_done, "seconds": round(time.perf_counter() - t0, 1),
            "final_loss": losses[-1], "losses_every_10": losses[::10]}
    (dest / "longctx_training.json").write_text(json.dumps(info, indent=2))
    return info


def train_baselines(cfg: TrainConfig, out: str, archs: tuple[str, ...] = ARCHITECTURES,
                    log: Callable[[str], None] = print) -> list[dict]:
    unknown = [a for a in archs if a not in ARCHITECTURES]
    if unknown:
        raise UserError(f"unknown architecture(s) {', '.join(unknown)}; available: {', '.join(ARCHITECTURES)}")
    out_dir = Path(out)
    return [train_one(a, cfg, out_dir, log=log) for a in archs]

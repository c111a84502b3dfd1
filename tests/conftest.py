"""Shared fixtures: the real SmolLM2 checkpoint (imported once into the cache) and tiny models built in tests."""
from __future__ import annotations

import os

import pytest
import torch

# Triton has no CPU backend: without a GPU its kernels run in the interpreter. The flag is read when a kernel (and
# triton.language's own helpers) is decorated, so it must be set before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The scripted runner (harness.runners.fake) is registered only for tests, here and in the CLI subprocesses they start.
os.environ["LONGCTX_TEST_RUNNERS"] = "1"
# The prompt cache (evals.cache) starts empty for every test session, in a folder of its own: tests see the cache
# work (second builds are hits) and never a prompt left by an earlier checkout.
if "LONGCTX_PROMPT_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["LONGCTX_PROMPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="longctx-prompts-")
    atexit.register(shutil.rmtree, os.environ["LONGCTX_PROMPT_CACHE_DIR"], True)

# Special-token ids and tied embeddings shared by every tiny model.
SPECIAL_IDS = dict(eos_token_id=2, bos_token_id=1, pad_token_id=2, tie_word_embeddings=True)


def _save_random(tmp_path_factory, name: str, model_cls, config, tokenizer) -> str:
    """Build `model_cls(config)` from seed 0 and save it with `tokenizer` as a checkpoint directory."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(name)
    model_cls(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """The embedded default model as a local checkpoint (imports it on first use, ~20 s)."""
    from harness.models import resolve_model

    return resolve_model("smollm2", log=lambda *_: None).path


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory, smollm2_tokenizer) -> str:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer, saved as a checkpoint directory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, rope_theta=10000.0, **SPECIAL_IDS)
    return _save_random(tmp_path_factory, "tiny-llama", LlamaForCausalLM, cfg, smollm2_tokenizer)


@pytest.fixture(scope="session")
def tiny_bloom_path(tmp_path_factory, smollm2_tokenizer) -> str:
    """A randomly initialised 2-layer Bloom (native ALiBi, 6 heads: a non-power-of-two slope set)."""
    from transformers import BloomConfig, BloomForCausalLM

    cfg = BloomConfig(vocab_size=len(smollm2_tokenizer), hidden_size=48, n_layer=2, n_head=6, **SPECIAL_IDS)
    return _save_random(tmp_path_factory, "tiny-bloom", BloomForCausalLM, cfg, smollm2_tokenizer)


@pytest.fixture(scope="session")
def tiny_llama64_path(tmp_path_factory, smollm2_tokenizer) -> str:
    """Like tiny_llama_path but with head_dim 64 (vLLM's CPU attention supports no head_dim below 32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=128, intermediate_size=256,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                      max_position_embeddings=512, rope_theta=10000.0, **SPECIAL_IDS)
    return _save_random(tmp_path_factory, "tiny-llama64", LlamaForCausalLM, cfg, smollm2_tokenizer)


@pytest.fixture(scope="session")
def tiny_mamba2_path(tmp_path_factory, smollm2_tokenizer) -> str:
    """A randomly initialised 2-layer Mamba-2 with SmolLM2's tokenizer."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    cfg = Mamba2Config(vocab_size=len(smollm2_tokenizer), hidden_size=64, num_hidden_layers=2, num_heads=4,
                       head_dim=32, state_size=16, expand=2, n_groups=1, chunk_size=64, **SPECIAL_IDS)
    return _save_random(tmp_path_factory, "tiny-mamba2", Mamba2ForCausalLM, cfg, smollm2_tokenizer)


@pytest.fixture(scope="session")
def tiny_mamba_path(tmp_path_factory, smollm2_tokenizer) -> str:
    """A randomly initialised 2-layer Mamba (v1) with SmolLM2's tokenizer."""
    from transformers import MambaConfig, MambaForCausalLM

    cfg = MambaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=64, num_hidden_layers=2, state_size=8,
                      expand=2, **SPECIAL_IDS)
    return _save_random(tmp_path_factory, "tiny-mamba", MambaForCausalLM, cfg, smollm2_tokenizer)


@pytest.fixture(scope="session")
def tiny_lfm2_path(tmp_path_factory, smollm2_tokenizer) -> str:
    """A randomly initialised hybrid: a short causal convolution, then RoPE attention (LFM2; Zoology's layout)."""
    from transformers import Lfm2Config, Lfm2ForCausalLM

    cfg = Lfm2Config(vocab_size=len(smollm2_tokenizer), hidden_size=64, intermediate_size=128,
                     block_auto_adjust_ff_dim=False, num_hidden_layers=2, layer_types=["conv", "full_attention"],
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, conv_L_cache=3,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **SPECIAL_IDS)
    return _save_random(tmp_path_factory, "tiny-lfm2", Lfm2ForCausalLM, cfg, smollm2_tokenizer)

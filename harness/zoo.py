"""Tiny random checkpoints of transformers model families, each with its own features switched on.

A researcher brings Mistral, Gemma, Phi, Qwen, Llama-3.1, Pythia, Granite, Command-R ... Each family differs from
Llama in something a long-context method meets: sliding windows per layer, logit softcaps, partial or interleaved
rotary, per-layer rope parameters, a RoPE already scaled in training, learned sink logits, layers without RoPE,
attention that does not go through transformers' attention interface, recurrent layers. This module builds one
2–4-layer model per family with that feature switched on and small enough to bite at a few hundred tokens (windows
of 48, small softcaps), seeded, so that the conformance tests and `scripts/model_support.py` check longctx on every
feature in seconds. The families are data: longctx's decisions never read this table (they read the model's own
config, modules and a probe forward, `harness.profile`); a family missing here is profiled the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WINDOW = 48  # sliding window of the tiny models: bites at the conformance tests' 96-160-token prompts


@dataclass(frozen=True)
class Family:
    name: str  # our label (a family, or a family with one feature switched on)
    config_cls: str  # transformers' config class
    model_cls: str  # transformers' causal-LM class
    kwargs: dict = field(default_factory=dict)  # config keywords (sizes and the features)
    features: str = ""  # what it exercises, for the support table


_SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512)
_ROPE = {"rope_type": "default", "rope_theta": 10000.0}

FAMILIES: tuple[Family, ...] = (
    Family("llama", "LlamaConfig", "LlamaForCausalLM", dict(_SMALL, rope_parameters=_ROPE), "the reference shape"),
    Family("llama3-scaled", "LlamaConfig", "LlamaForCausalLM",
           dict(_SMALL, rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 128}),
           "RoPE already scaled in training (llama3 type)"),
    Family("mistral", "MistralConfig", "MistralForCausalLM", dict(_SMALL, sliding_window=WINDOW, head_dim=16),
           "sliding window on every layer"),
    Family("qwen2", "Qwen2Config", "Qwen2ForCausalLM", dict(_SMALL), "attention biases"),
    Family("qwen2-sliding", "Qwen2Config", "Qwen2ForCausalLM",
           dict(_SMALL, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),
           "sliding window on some layers"),
    Family("qwen3", "Qwen3Config", "Qwen3ForCausalLM", dict(_SMALL, head_dim=16), "q/k norms"),
    Family("gemma", "GemmaConfig", "GemmaForCausalLM", dict(_SMALL, head_dim=16), "scaled embeddings"),
    Family("gemma2", "Gemma2Config", "Gemma2ForCausalLM",
           dict(_SMALL, head_dim=16, sliding_window=WINDOW, attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                layer_types=["sliding_attention", "full_attention"]),
           "alternating sliding layers, attention and final logit softcaps"),
    Family("gemma3", "Gemma3TextConfig", "Gemma3ForCausalLM",
           dict(_SMALL, head_dim=16, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"],
                rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                 "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}}),
           "per-layer-type rope parameters, sliding layers"),
    Family("phi3", "Phi3Config", "Phi3ForCausalLM",
           dict(_SMALL, sliding_window=WINDOW, rope_parameters={**_ROPE, "partial_rotary_factor": 0.5}),
           "partial rotary, sliding window"),
    Family("phi", "PhiConfig", "PhiForCausalLM",
           dict(_SMALL, rope_parameters={**_ROPE, "partial_rotary_factor": 0.5}), "partial rotary, parallel block"),
    Family("gpt-neox", "GPTNeoXConfig", "GPTNeoXForCausalLM",
           dict(_SMALL, rope_parameters={**_ROPE, "partial_rotary_factor": 0.25}), "partial rotary (Pythia)"),
    Family("stablelm", "StableLmConfig", "StableLmForCausalLM",
           dict(_SMALL, rope_parameters={**_ROPE, "partial_rotary_factor": 0.25}), "partial rotary"),
    Family("cohere", "CohereConfig", "CohereForCausalLM", dict(_SMALL, logit_scale=0.5, rope_parameters=_ROPE),
           "interleaved rotary, logit scale"),
    Family("cohere2", "Cohere2Config", "Cohere2ForCausalLM",
           dict(_SMALL, logit_scale=0.5, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"],
                rope_parameters=_ROPE),
           "interleaved rotary, sliding layers, logit scale"),
    Family("granite", "GraniteConfig", "GraniteForCausalLM", dict(_SMALL, logits_scaling=4.0, rope_parameters=_ROPE),
           "logits scaling"),
    Family("olmo2", "Olmo2Config", "Olmo2ForCausalLM", dict(_SMALL, rope_parameters=_ROPE), "post-norms"),
    Family("starcoder2", "Starcoder2Config", "Starcoder2ForCausalLM",
           dict(_SMALL, sliding_window=WINDOW, rope_parameters=_ROPE), "sliding window"),
    Family("smollm3", "SmolLM3Config", "SmolLM3ForCausalLM",
           dict(_SMALL, num_hidden_layers=4, no_rope_layers=[1, 1, 1, 0], rope_parameters=_ROPE),
           "layers without RoPE"),
    Family("gpt-oss", "GptOssConfig", "GptOssForCausalLM",
           dict(_SMALL, head_dim=16, num_local_experts=2, num_experts_per_tok=1, sliding_window=WINDOW,
                layer_types=["sliding_attention", "full_attention"], rope_parameters=_ROPE),
           "learned sink logits, sliding layers"),
    Family("falcon", "FalconConfig", "FalconForCausalLM",
           dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, new_decoder_architecture=False,
                multi_query=True, max_position_embeddings=512), "attention outside the interface"),
    Family("falcon-alibi", "FalconConfig", "FalconForCausalLM",
           dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, alibi=True, max_position_embeddings=512),
           "trained ALiBi, attention outside the interface"),
    Family("bloom", "BloomConfig", "BloomForCausalLM", dict(hidden_size=48, n_layer=2, n_head=6),
           "trained ALiBi"),
    Family("zamba2", "Zamba2Config", "Zamba2ForCausalLM",
           dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, intermediate_size=128,
                mamba_d_state=16, n_mamba_heads=8, layers_block_type=["mamba", "hybrid"], mamba_expand=2,
                max_position_embeddings=512, use_mem_rope=True, rope_parameters=_ROPE),
           "hybrid: Mamba-2 layers and shared attention"),
    Family("lfm2", "Lfm2Config", "Lfm2ForCausalLM",
           dict(hidden_size=64, intermediate_size=128, block_auto_adjust_ff_dim=False, num_hidden_layers=2,
                layer_types=["conv", "full_attention"], num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=512, conv_L_cache=3, rope_parameters=_ROPE),
           "hybrid: short convolutions and attention"),
    Family("mamba2", "Mamba2Config", "Mamba2ForCausalLM",
           dict(hidden_size=64, num_hidden_layers=2, num_heads=4, head_dim=32, state_size=16, expand=2, n_groups=1,
                chunk_size=64), "recurrent only"),
)

SPECIAL_IDS = dict(eos_token_id=2, bos_token_id=1, pad_token_id=2, tie_word_embeddings=True)


def family(name: str) -> Family:
    for f in FAMILIES:
        if f.name == name:
            return f
    from harness.errors import unknown_name

    raise unknown_name("family", name, [f.name for f in FAMILIES])


def build(fam: Family, vocab_size: int, seed: int = 0) -> Any:
    """The family's tiny model, randomly initialised from `seed`, in float32 and eval mode."""
    import torch
    import transformers

    config = getattr(transformers, fam.config_cls)(vocab_size=vocab_size, **SPECIAL_IDS, **fam.kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, fam.model_cls)(config).float().eval()
    return model


def save(fam: Family, tokenizer, path, seed: int = 0) -> str:
    """Build the family's tiny model with `tokenizer`'s vocabulary and save both as a checkpoint directory."""
    model = build(fam, len(tokenizer), seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)

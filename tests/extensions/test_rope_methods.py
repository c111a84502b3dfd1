"""RoPE scaling methods: golden checks against transformers' own rope functions, closed forms from the papers,
and the end-to-end effect inside a real (tiny) Llama."""
import math

import pytest
import torch

from extensions import EXTENSIONS
from extensions.dynamic_ntk import dynamic_ntk_base
from extensions.ntk import ntk_base
from extensions.pi import pi_inv_freq
from extensions.rope import default_inv_freq, yarn_mscale
from extensions.yarn import yarn_inv_freq

GRID = [(64, 10000.0, 2.0), (64, 100000.0, 4.0), (128, 500000.0, 8.0), (96, 10000.0, 3.5), (32, 1e6, 16.0)]


def _config(dim, base, rope_parameters, max_pos=4096):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=dim * 4, num_attention_heads=4, head_dim=dim, max_position_embeddings=max_pos,
                       rope_parameters={"rope_theta": base, **rope_parameters})


def _hf(rope_type, cfg, seq_len=None):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    return ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu", seq_len=seq_len)


@pytest.mark.parametrize("dim,base,factor", GRID)
def test_pi_equals_transformers_linear(dim, base, factor):
    ref, scale = _hf("linear", _config(dim, base, {"rope_type": "linear", "factor": factor}))
    torch.testing.assert_close(pi_inv_freq(dim, base, factor), ref, rtol=1e-6, atol=0)
    assert scale == 1.0


@pytest.mark.parametrize("dim,base,factor", GRID)
@pytest.mark.parametrize("seq_len", [1000, 4096, 5000, 40000])
def test_dynamic_ntk_equals_transformers_dynamic(dim, base, factor, seq_len):
    ref, _ = _hf("dynamic", _config(dim, base, {"rope_type": "dynamic", "factor": factor}), seq_len=seq_len)
    ours = default_inv_freq(dim, dynamic_ntk_base(base, factor, dim, seq_len, 4096))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dim,base,factor", GRID)
@pytest.mark.parametrize("betas", [(32.0, 1.0), (16.0, 2.0)])
def test_yarn_equals_transformers_yarn(dim, base, factor, betas):
    cfg = _config(dim, base, {"rope_type": "yarn", "factor": factor, "beta_fast": betas[0], "beta_slow": betas[1],
                              "original_max_position_embeddings": 4096})
    ref, scale = _hf("yarn", cfg)
    torch.testing.assert_close(yarn_inv_freq(dim, base, factor, 4096, *betas), ref, rtol=1e-6, atol=0)
    assert scale == pytest.approx(yarn_mscale(factor), abs=1e-12)


def test_pi_maps_scaled_positions_onto_trained_angles():
    dim, base, s = 64, 10000.0, 4.0
    p = torch.arange(0, 2048, 7, dtype=torch.float32)
    torch.testing.assert_close((s * p)[:, None] * pi_inv_freq(dim, base, s), p[:, None] * default_inv_freq(dim, base))


@pytest.mark.parametrize("dim,base,factor", GRID)
def test_ntk_keeps_highest_and_divides_lowest_frequency_by_s(dim, base, factor):
    new = default_inv_freq(dim, ntk_base(base, factor, dim)).double()
    old = default_inv_freq(dim, base).double()
    assert new[0] == old[0] == 1.0
    assert new[-1].item() == pytest.approx(old[-1].item() / factor, rel=1e-5)


def test_yarn_temperature_closed_form():
    assert yarn_mscale(1.0) == 1.0
    assert yarn_mscale(4.0) == pytest.approx(0.1 * math.log(4.0) + 1)
    assert yarn_mscale(math.e**2) == pytest.approx(1.2)


def test_yarn_keeps_fast_pairs_and_interpolates_slow_pairs():
    dim, base, s, orig = 64, 10000.0, 4.0, 4096
    theta = default_inv_freq(dim, base)
    ours = yarn_inv_freq(dim, base, s, orig)
    turns = orig * theta / (2 * math.pi)  # r_i: turns over the original context
    fast, slow = turns > 32 * 1.5, turns < 1 / 1.5  # away from the floor/ceil at the ramp's ends
    torch.testing.assert_close(ours[fast], theta[fast])
    torch.testing.assert_close(ours[slow], theta[slow] / s)


@pytest.mark.parametrize("name,params", [("pi", {"factor": 0.5}), ("ntk", {"factor": "two"}),
                                         ("yarn", {"beta_fast": 1, "beta_slow": 2}), ("pi", {"scale": 2}),
                                         ("dynamic-ntk", {"rerotate": "yes"})])
def test_bad_parameters_raise_value_error_naming_the_fix(name, params):
    ext = EXTENSIONS.get(name)()
    with pytest.raises((ValueError, TypeError)) as e:
        ext.parse(params)
    print(e.value)
    assert str(e.value)


def test_unknown_parameter_lists_allowed_ones():
    with pytest.raises(ValueError, match="allowed: factor, replace, beta_fast, beta_slow"):
        EXTENSIONS.get("yarn")().parse({"beta": 3})


@pytest.mark.parametrize("name,params", [("pi", {"factor": 4}), ("ntk", {"factor": 4}),
                                         ("yarn", {"factor": 4, "beta_fast": 16}),
                                         ("dynamic-ntk", {"factor": 4})])
def test_configured_model_uses_our_frequencies(tiny_llama_path, name, params):
    """configure() through rope_parameters makes transformers' rotary module hold exactly our inv_freq."""
    from transformers import AutoConfig, AutoModelForCausalLM

    ext = EXTENSIONS.get(name)()
    cfg = AutoConfig.from_pretrained(tiny_llama_path)
    conf = ext.resolve(ext.parse(params), cfg)
    ext.configure(cfg, conf)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, config=cfg, dtype=torch.float32)
    inv, scaling = ext.inv_freq(conf, cfg)
    torch.testing.assert_close(model.model.rotary_emb.inv_freq, inv, rtol=1e-6, atol=0)
    assert model.model.rotary_emb.attention_scaling == pytest.approx(scaling)


def _decode_vs_full(runner, ext, conf, ids, prefill: int):
    from harness.runners.cache import RunnerCache

    model = runner.model
    with torch.inference_mode():
        ext.before_request(model, conf)
        cache = RunnerCache(model.config, ext.kv_policy(conf, model.config))
        out = model(input_ids=ids[:, :prefill], past_key_values=cache, use_cache=True)
        for t in range(prefill, ids.shape[1]):
            cache.before_decode(t + 1)
            out = model(input_ids=ids[:, t:t + 1], past_key_values=out.past_key_values, use_cache=True)
        cached = out.logits[0, -1]
        ext.before_request(model, conf)
        full = model(input_ids=ids).logits[0, -1]
    return (cached - full).abs().max().item()


def test_dynamic_ntk_rerotation_makes_cached_decoding_equal_a_full_forward(tiny_llama_path):
    """With re-rotated keys, decoding tokens L+1..L+k from the cache gives the logits of a fresh forward over all
    L+k tokens (which uses one base throughout); transformers' plain cache (rerotate=false) does not."""
    from harness.runners.base import GenerationRequest
    from harness.runners.hf import HFRunner

    ext = EXTENSIONS.get("dynamic-ntk")()
    torch.manual_seed(0)
    ids = torch.randint(10, 1000, (1, 700))
    errs = {}
    for rerotate in (True, False):
        conf = ext.parse({"factor": 4, "rerotate": rerotate})
        runner = HFRunner(device="cpu", dtype="float32")
        runner.load(tiny_llama_path, ext, conf)  # trained length 512
        errs[rerotate] = _decode_vs_full(runner, ext, conf, ids, prefill=600)
    print("max abs logit difference, cached vs full:", errs)
    # 100 successive fp32 re-rotations accumulate rounding (measured 1.8e-5 here); not re-rotating is ~60x worse.
    assert errs[True] < 1e-4
    assert errs[False] > 20 * errs[True]
    (g,) = runner.generate([GenerationRequest("The lake is calm. " * 130, max_new_tokens=3)])
    assert g.prompt_tokens > 512 and g.new_tokens >= 1


def test_extensions_show_prints_the_effective_parameters(tiny_llama_path):
    """`longctx extensions show` is the audit interface: its inv_freq is what the loaded model uses."""
    import json
    import subprocess
    import sys

    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    res = subprocess.run([sys.executable, "-m", "harness.cli", "extensions", "show", "yarn", "-E", "factor=4",
                          "--model", tiny_llama_path, "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    cfg = AutoConfig.from_pretrained(tiny_llama_path)
    cfg.rope_parameters = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                           "original_max_position_embeddings": 512}
    ref, scale = ROPE_INIT_FUNCTIONS["yarn"](cfg, "cpu")
    torch.testing.assert_close(torch.tensor(doc["inv_freq"]), ref, rtol=1e-6, atol=0)
    assert doc["attention_scaling"] == pytest.approx(scale)
    assert doc["params"]["original_max_position_embeddings"] == 512

    res = subprocess.run([sys.executable, "-m", "harness.cli", "extensions", "show", "sinks", "-E", "window=8",
                          "--length", "20", "--model", tiny_llama_path, "--json"], capture_output=True, text=True)
    assert json.loads(res.stdout)["kept_keys"] == [0, 1, 2, 3, 12, 13, 14, 15, 16, 17, 18, 19]


def test_rope_methods_rescale_each_layer_types_own_parameters():
    """On rope parameters per layer type (Gemma 3), yarn rescales the full-attention type from its own base and
    leaves the sliding type (which never sees past its window) as trained — in the model's own buffers."""
    import transformers

    from extensions.rope import default_inv_freq
    from extensions.yarn import yarn_inv_freq
    from harness import zoo
    from harness.profile import read_profile

    fam = zoo.family("gemma3")
    cfg = getattr(transformers, fam.config_cls)(vocab_size=512, **zoo.SPECIAL_IDS, **fam.kwargs)
    ext = EXTENSIONS.get("yarn")()
    conf = ext.resolve(ext.parse({"factor": 4}), cfg)
    record = ext.configure(cfg, conf, profile=read_profile(cfg))
    assert record["rescaled_layer_types"] == ["full_attention"]
    rot = getattr(transformers, fam.model_cls)(cfg).model.rotary_emb
    torch.testing.assert_close(rot.full_attention_inv_freq, yarn_inv_freq(16, 1e6, 4.0, 512), rtol=1e-6, atol=0)
    torch.testing.assert_close(rot.sliding_attention_inv_freq, default_inv_freq(16, 1e4), rtol=1e-6, atol=0)
    assert rot.full_attention_attention_scaling == pytest.approx(0.1 * math.log(4) + 1)


def test_replace_swaps_a_trained_scaling_for_the_method():
    """-E replace=true on a llama3-scaled RoPE: the method's parameters replace the trained ones, recorded."""
    import transformers

    from harness import zoo

    fam = zoo.family("llama3-scaled")
    cfg = getattr(transformers, fam.config_cls)(vocab_size=512, **zoo.SPECIAL_IDS, **fam.kwargs)
    ext = EXTENSIONS.get("yarn")()
    record = ext.configure(cfg, ext.resolve(ext.parse({"factor": 2, "replace": True}), cfg))
    assert record["rope_parameters_before"]["rope_type"] == "llama3"
    assert cfg.rope_parameters["rope_type"] == "yarn"


# ------------------------------------------------------------------ the RoPE types production models ship (issue 33)
@pytest.mark.parametrize("dim,base,factor", GRID)
@pytest.mark.parametrize("low,high,orig", [(1.0, 4.0, 4096), (2.0, 8.0, 2048), (1.0, 4.0, 8192)])
def test_llama3_equals_transformers_llama3(dim, base, factor, low, high, orig):
    from extensions.llama3 import llama3_inv_freq

    cfg = _config(dim, base, {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                              "high_freq_factor": high, "original_max_position_embeddings": orig})
    ref, scale = _hf("llama3", cfg)
    torch.testing.assert_close(llama3_inv_freq(dim, base, factor, orig, low, high), ref, rtol=1e-6, atol=0)
    assert scale == 1.0


def test_llama3_bands_closed_form():
    """Wavelengths under L/high kept, over L/low divided by s, and the blend is continuous at both edges."""
    from extensions.llama3 import llama3_inv_freq

    dim, base, s, L = 128, 500000.0, 8.0, 8192
    theta = default_inv_freq(dim, base)
    ours = llama3_inv_freq(dim, base, s, L)
    wl = 2 * math.pi / theta
    torch.testing.assert_close(ours[wl < L / 4], theta[wl < L / 4])
    torch.testing.assert_close(ours[wl > L], theta[wl > L] / s)
    mid = (wl >= L / 4) & (wl <= L)
    assert mid.any() and bool(((ours[mid] <= theta[mid]) & (ours[mid] >= theta[mid] / s)).all())


@pytest.mark.parametrize("dim,base,factor", GRID)
@pytest.mark.parametrize("seq_len", [None, 4096, 4097, 40000])
def test_longrope_equals_transformers_longrope(dim, base, factor, seq_len):
    """Short factors within L, long ones past it, and the attention factor sqrt(1 + ln s / ln L)."""
    from extensions.longrope import LongRope

    g = torch.Generator().manual_seed(dim)
    long = (1 + 7 * torch.rand(dim // 2, generator=g)).tolist()
    short = (1 + 0.1 * torch.rand(dim // 2, generator=g)).tolist()
    cfg = _config(dim, base, {"rope_type": "longrope", "factor": factor, "long_factor": long, "short_factor": short,
                              "original_max_position_embeddings": 4096})
    ref, scale = _hf("longrope", cfg, seq_len=seq_len)
    ext = LongRope()
    plain = _config(dim, base, {"rope_type": "default"})
    conf = ext.resolve(ext.parse({"factor": factor, "long_factor": long, "short_factor": short,
                                  "original_max_position_embeddings": 4096}), plain)
    ours, our_scale = ext.inv_freq(conf, plain, seq_len=seq_len)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)
    assert our_scale == pytest.approx(scale, abs=1e-12)
    assert scale == pytest.approx(math.sqrt(1 + math.log(factor) / math.log(4096)))


def test_longrope_reads_a_trained_models_factors_and_refuses_a_model_without():
    """On a model trained with LongRoPE (a tiny Phi-3 with longrope) the factors are its own; on a plain RoPE model
    without -E long_factor the method is refused naming the number of values it needs."""
    import transformers

    from extensions.longrope import LongRope
    from harness import zoo

    long = [1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]
    cfg = transformers.Phi3Config(vocab_size=512, **zoo.SPECIAL_IDS, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=512,
                                  rope_parameters={"rope_type": "longrope", "rope_theta": 1e4, "long_factor": long,
                                                   "short_factor": [1.0] * 8, "original_max_position_embeddings": 128})
    ext = LongRope()
    conf = ext.resolve(ext.parse({"factor": 4, "replace": True}), cfg)
    assert list(conf.long_factor) == pytest.approx(cfg.rope_parameters["long_factor"])
    assert conf.original_max_position_embeddings == cfg.rope_parameters["original_max_position_embeddings"]
    with pytest.raises(ValueError, match=r"needs long_factor \(8 divisors"):
        ext.resolve(ext.parse({}), _config(16, 1e4, {"rope_type": "default"}))
    with pytest.raises(ValueError, match="has 3 values; this model has 8 rotary pairs"):
        ext.resolve(ext.parse({"long_factor": [1, 2, 3]}), _config(16, 1e4, {"rope_type": "default"}))


@pytest.mark.parametrize("dim,base,factor", GRID)
def test_ntk_by_parts_is_yarn_without_its_temperature(dim, base, factor):
    cfg = _config(dim, base, {"rope_type": "yarn", "factor": factor, "attention_factor": 1.0,
                              "original_max_position_embeddings": 4096})
    ref, scale = _hf("yarn", cfg)
    ext = EXTENSIONS.get("ntk-by-parts")()
    conf = ext.resolve(ext.parse({"factor": factor}), _config(dim, base, {"rope_type": "default"}))
    ours, our_scale = ext.inv_freq(conf, _config(dim, base, {"rope_type": "default"}))
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)
    assert scale == our_scale == 1.0
    torch.testing.assert_close(ours, yarn_inv_freq(dim, base, factor, 4096))


@pytest.mark.parametrize("dim,base", [(64, 10000.0), (128, 1e6), (96, 1e5)])
@pytest.mark.parametrize("proportion,factor", [(1.0, 1.0), (0.75, 1.0), (0.5, 2.0), (0.25, 1.0)])
def test_proportional_equals_transformers_proportional(dim, base, proportion, factor):
    from extensions.proportional import proportional_inv_freq

    cfg = _config(dim, base, {"rope_type": "proportional", "factor": factor, "partial_rotary_factor": proportion})
    ref, scale = _hf("proportional", cfg)
    ours = proportional_inv_freq(dim, base, proportion, factor)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)
    kept = int(proportion * dim // 2)
    assert bool((ours[kept:] == 0).all()) and bool((ours[:kept] > 0).all())
    torch.testing.assert_close(ours[:kept], default_inv_freq(dim, base)[:kept] / factor)


@pytest.mark.parametrize("name,params", [
    ("llama3", {"factor": 4, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 256}),
    ("ntk-by-parts", {"factor": 4}), ("proportional", {"partial_rotary_factor": 0.5}),
    ("longrope", {"factor": 4, "original_max_position_embeddings": 256,
                  "long_factor": [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 8.0]})])
def test_production_rope_types_reach_the_model(tiny_llama_path, name, params):
    """configure() makes transformers' rotary module compute exactly our frequencies and attention factor (longrope:
    its long factors once a sequence passes L)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    ext = EXTENSIONS.get(name)()
    cfg = AutoConfig.from_pretrained(tiny_llama_path)
    conf = ext.resolve(ext.parse(params), cfg)
    record = ext.configure(cfg, conf)
    assert record["rope_parameters"]["rope_type"] == ("yarn" if name == "ntk-by-parts" else name)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path, config=cfg, dtype=torch.float32)
    rot = model.model.rotary_emb
    x = torch.zeros(1, 1, 8)
    pos = torch.arange(300)[None]
    cos, _ = rot(x, pos)  # the long factors apply once max(position) + 1 > L = 256
    inv, scaling = ext.inv_freq(conf, cfg, seq_len=300)
    torch.testing.assert_close(rot.inv_freq, inv, rtol=1e-6, atol=0)
    assert rot.attention_scaling == pytest.approx(scaling)
    torch.testing.assert_close(cos[0, 299, : len(inv)], torch.cos(299 * inv) * scaling, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,params,match", [
    ("llama3", {"low_freq_factor": 4, "high_freq_factor": 1}, "high_freq_factor > low_freq_factor"),
    ("llama3", {"original_max_position_embeddings": 0}, "positive integer"),
    ("longrope", {"long_factor": 2.0}, "one divisor per rotary pair"),
    ("longrope", {"long_factor": [1, -1]}, "positive finite"),
    ("ntk-by-parts", {"attention_factor": 1.2}, "unknown parameter"),
    ("proportional", {"partial_rotary_factor": 1.5}, r"in \(0, 1\]")])
def test_production_rope_types_refuse_bad_parameters(name, params, match):
    with pytest.raises(ValueError, match=match):
        EXTENSIONS.get(name)().parse(params)


def test_longrope_factors_from_the_command_line():
    """-E long_factor=1,1.5,2 parses to a list of numbers (and a word list stays text)."""
    from harness.config import parse_params

    assert parse_params(["long_factor=1,1.5,2"]) == {"long_factor": (1, 1.5, 2)}
    assert parse_params(["long_factor=[1, 2]"]) == {"long_factor": (1, 2)}
    assert parse_params(["x=a,b"]) == {"x": "a,b"}


@pytest.mark.parametrize("name,params", [("llama3", {"factor": 4}), ("yarn", {"factor": 4}),
                                         ("ntk-by-parts", {"factor": 4}),
                                         ("longrope", {"factor": 4, "long_factor": [1, 1.5, 2, 3, 4, 5, 6, 8]})])
def test_a_configs_own_original_length_does_not_override_the_methods(name, params):
    """Phi-3's config carries original_max_position_embeddings (4096 by default) outside its rope parameters, and
    transformers prefers it for llama3 / yarn / longrope: the method's own L must be what the model runs (found on
    the tiny Phi-3 of harness.zoo, whose L is 512: llama3 ×4 ran with L = 4096, moving the logits by 4e-5)."""
    import transformers

    from harness import zoo

    cfg = transformers.Phi3Config(vocab_size=512, **zoo.SPECIAL_IDS, hidden_size=64, intermediate_size=128,
                                  num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=512)
    assert cfg.original_max_position_embeddings == 4096
    ext = EXTENSIONS.get(name)()
    conf = ext.resolve(ext.parse(params), cfg)
    record = ext.configure(cfg, conf)
    assert record["original_max_position_embeddings_attribute"] == {"before": 4096, "after": 512}
    rot = transformers.Phi3ForCausalLM(cfg).model.rotary_emb
    rot(torch.zeros(1, 1, 8), torch.arange(600)[None])  # past L: longrope's long factors
    inv, scaling = ext.inv_freq(conf, cfg, seq_len=600)
    torch.testing.assert_close(rot.inv_freq, inv, rtol=1e-6, atol=0)
    assert rot.attention_scaling == pytest.approx(scaling)

"""Conformance: every family of harness.zoo × runner × method is honoured (equal to the model's own eager forward
where the method changes nothing, different where it claims to apply) or refused in one line — never silently
wrong. The decisions come from each model's profile (harness.profile); the families are only test data.

Identity settings: `none`; yarn ×1; sinks and SelfExtend with windows past the prompt (the model's own sliding
window still applies on its layers); the prompt is 150 tokens, past the tiny models' 48-token windows.
"""
from __future__ import annotations

import pytest
import torch

from harness import zoo
from harness.support import REFUSED, decide

T = 150  # prompt tokens: past the zoo's 48-token windows, inside its 512-token context
ATOL = 1e-5  # fp32 on both sides; different kernels sum in different orders (observed ≤ 2e-5 on these models)

ATTENTION_FAMILIES = [f.name for f in zoo.FAMILIES if f.name != "mamba2"]
IDENTITY = [("none", {}), ("yarn", {"factor": 1.0}), ("sinks", {"sink_tokens": 4, "window": 256}),
            ("selfextend", {"group": 4, "window": 256})]
APPLYING = [("yarn", {"factor": 4.0}), ("ntk", {"factor": 4.0}), ("sinks", {"sink_tokens": 4, "window": 24}),
            ("selfextend", {"group": 2, "window": 16}), ("alibi", {})]


@pytest.fixture(scope="session")
def family_paths(tmp_path_factory, smollm2_tokenizer) -> dict:
    out = {}
    for fam in zoo.FAMILIES:
        out[fam.name] = zoo.save(fam, smollm2_tokenizer, tmp_path_factory.mktemp(fam.name))
    return out


@pytest.fixture(scope="session")
def eager_logits(family_paths) -> dict:
    """The model's own eager forward over the prompt and one more token: (T + 1, vocab) logits, per family."""
    from transformers import AutoModelForCausalLM

    out = {}
    ids = prompt_ids()
    for name, path in family_paths.items():
        if name == "mamba2":
            continue
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.inference_mode():
            out[name] = model(input_ids=ids).logits[0].float()
    return out


def prompt_ids():
    g = torch.Generator().manual_seed(0)
    return torch.randint(10, 500, (1, T + 1), generator=g)


def _verdict(path, runner, method, params):
    from extensions import EXTENSIONS
    from harness.profile import read_profile
    from harness.runners import RUNNERS
    from transformers import AutoConfig

    ext = EXTENSIONS.get(method)()
    return decide(read_profile(AutoConfig.from_pretrained(path)), ext, ext.parse(params), RUNNERS.get(runner)), ext


def _run(path, runner_name, method, params):
    """Our runner's logits at the prompt's last position (prefill) and after one decode step, and its token NLLs."""
    from harness.runners import RUNNERS

    verdict, ext = _verdict(path, runner_name, method, params)
    if verdict.status == REFUSED:
        pytest.skip(f"refused: {verdict.notes[0]}")
    from transformers import AutoConfig

    config = ext.resolve(ext.parse(params), AutoConfig.from_pretrained(path))
    runner = RUNNERS.get(runner_name)(device="cpu", dtype="float32")
    runner.load(path, ext, config, max_length=T + 1)
    ids = prompt_ids()
    with torch.inference_mode():
        ext.before_request(runner.model, config)
        cache = runner._new_cache()
        first = runner._prefill(ids[:, :T], cache).logits[0, -1].float()
        cache.before_decode(T + 1)
        kw = {"position_ids": torch.tensor([[T]])} if cache.streams else {}
        second = runner.model(input_ids=ids[:, T:], past_key_values=cache, use_cache=True, logits_to_keep=1,
                              **kw).logits[0, -1].float()
    nll = runner.token_nll(ids)
    runner.close()
    return first, second, nll


def _nll(logits, ids):
    return torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="none")


@pytest.mark.parametrize("method,params", IDENTITY, ids=[m for m, _ in IDENTITY])
@pytest.mark.parametrize("runner", ["hf", "kernel"])
@pytest.mark.parametrize("family", ATTENTION_FAMILIES)
def test_identity_settings_equal_the_models_own_eager_forward(family_paths, eager_logits, family, runner, method,
                                                              params):
    first, second, nll = _run(family_paths[family], runner, method, params)
    ref = eager_logits[family]
    err = max(float((first - ref[T - 1]).abs().max()), float((second - ref[T]).abs().max()))
    nll_err = float((nll - _nll(ref, prompt_ids())).abs().max())
    print(f"{family} {runner} {method}: logits max error {err:.2e}, token NLL max error {nll_err:.2e}")
    assert err <= ATOL and nll_err <= ATOL


@pytest.mark.parametrize("method,params", APPLYING, ids=[m for m, _ in APPLYING])
@pytest.mark.parametrize("runner", ["hf", "kernel"])
@pytest.mark.parametrize("family", ATTENTION_FAMILIES)
def test_a_method_that_claims_to_apply_changes_the_logits(family_paths, eager_logits, family, runner, method,
                                                          params):
    first, second, _ = _run(family_paths[family], runner, method, params)
    ref = eager_logits[family]
    moved = max(float((first - ref[T - 1]).abs().max()), float((second - ref[T]).abs().max()))
    print(f"{family} {runner} {method}: logits moved by {moved:.2e}")
    if method == "alibi" and family_profile(family_paths[family]).alibi:
        assert moved <= ATOL, "alibi with the trained slopes on a model trained with them is the identity"
        return
    # Identity settings stay within 2e-5 of the eager forward (above); a method that runs moves the logits well
    # past that, even on these random 2-layer models whose logits are ~0.1 (the smallest move seen: 1.6e-4).
    assert moved > 10 * ATOL, "a method that runs must change something: a silent no-op"


# Issue 33's methods, on the kernel runner (its CPU path; the hf runner's oracle shares the spec and its composition
# with each model's features, and the oracle equals the CPU path on every spec case in tests/kernels).
MAP_IDENTITY = [("rerope", {"window": 256}), ("dca", {"chunk": 300, "local": 100}),
                ("lm-infinite", {"sink_tokens": 4, "window": 256}), ("logn", {"length": 256}),
                ("llama3", {"factor": 1.0})]
MAP_APPLYING = [("rerope", {"window": 16}), ("leaky-rerope", {"window": 16, "k": 4.0}),
                ("string", {"shift": 32, "local": 4}), ("lm-infinite", {"sink_tokens": 4, "window": 24}),
                ("dca", {"chunk": 32, "local": 8}), ("logn", {"length": 32}), ("llama3", {"factor": 4.0})]


@pytest.mark.parametrize("method,params", MAP_IDENTITY, ids=[m for m, _ in MAP_IDENTITY])
@pytest.mark.parametrize("family", ATTENTION_FAMILIES)
def test_new_methods_identity_settings_equal_the_models_own_forward(family_paths, eager_logits, family, method,
                                                                    params):
    """A window (chunk, length) past the 150-token prompt, or factor 1: the model's own forward, on every family."""
    test_identity_settings_equal_the_models_own_eager_forward(family_paths, eager_logits, family, "kernel", method,
                                                              params)


@pytest.mark.parametrize("method,params", MAP_APPLYING, ids=[m for m, _ in MAP_APPLYING])
@pytest.mark.parametrize("family", ATTENTION_FAMILIES)
def test_new_methods_that_apply_change_the_logits(family_paths, eager_logits, family, method, params):
    test_a_method_that_claims_to_apply_changes_the_logits(family_paths, eager_logits, family, "kernel", method, params)


def family_profile(path):
    from transformers import AutoConfig

    from harness.profile import read_profile

    return read_profile(AutoConfig.from_pretrained(path))


@pytest.mark.parametrize("family", [f for f in ATTENTION_FAMILIES if not f.startswith(("falcon", "bloom"))])
def test_re_rotation_equals_the_models_own_rotation_at_shifted_positions(family_paths, family):
    """kernels.rotary.shift, with each layer's profiled rotation, moves the model's q and k from one position to
    another exactly as the model itself rotates them there (positions other than the probe's own)."""
    from transformers import AutoModelForCausalLM

    from harness.profile import probe_calls, probe_model
    from kernels.rotary import shift

    model = AutoModelForCausalLM.from_pretrained(family_paths[family], dtype=torch.float32).eval()
    prof = probe_model(model)
    calls = probe_calls(model, positions=(300, 411))
    checked = 0
    for layer, call in zip(prof.attention, calls):
        for name in ("q_at", "k_at"):
            x300, x411 = call[name][300][:, None], call[name][411][:, None]  # (H, 1, D)
            if layer.rotary is None:
                assert torch.allclose(x300, x411), f"layer {layer.index} moves although profiled without RoPE"
                continue
            r = layer.rotary
            moved = shift(x300, torch.tensor([111]), r.tensor(), r.layout, r.dim)
            err = float((moved - x411).abs().max()) / float(x411.abs().max())
            assert err < 1e-5, f"layer {layer.index} {name}: relative error {err:.2e}"
            checked += 1
    assert checked or not prof.rope


def test_every_family_is_profiled_with_the_feature_it_was_built_for(family_paths):
    """The profile reads each family's feature from the model (not from its name)."""
    from transformers import AutoConfig

    from harness.profile import read_profile

    want = {"mistral": "sliding window", "gemma2": "attention logit softcap", "gemma3": "rope parameters per layer",
            "phi3": "partial rotary", "gpt-neox": "partial rotary", "cohere": "interleaved rotary",
            "granite": "logits divided by 4", "llama3-scaled": "RoPE scaled in training (llama3)",
            "smollm3": "layers without RoPE", "gpt-oss": "learned sink logits",
            "falcon": "attention outside transformers' interface", "zamba2": "hybrid", "mamba2": "recurrent only",
            "cohere2": "logits multiplied by 0.5"}
    for name, phrase in want.items():
        features = read_profile(AutoConfig.from_pretrained(family_paths[name])).features()
        assert any(phrase in f for f in features), f"{name}: {features}"


def test_the_readmes_support_table_is_what_the_profiles_decide(family_paths):
    """README's model-support table equals support_table() over the zoo's profiles (regenerate it with
    `python scripts/model_support.py`)."""
    from pathlib import Path

    from transformers import AutoConfig

    from harness.profile import read_profile
    from harness.support import support_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("<!-- support-table:begin -->\n")[1].split("\n<!-- support-table:end -->")[0]
    profiles = {name: read_profile(AutoConfig.from_pretrained(path)) for name, path in family_paths.items()}
    assert block == support_table(profiles)


@pytest.mark.parametrize("family,argv,phrase", [
    ("llama3-scaled", ["-e", "yarn", "-E", "factor=2"], "scaled in training (llama3)"),
    ("falcon", ["-e", "sinks", "-E", "window=32"], "does not go through transformers' attention interface"),
    ("falcon", ["-r", "kernel"], "kernel runner cannot route it"),
    ("gemma3", ["-e", "dynamic-ntk"], "rope parameters per layer type"),
    ("mamba2", ["-r", "kernel"], "recurrent layers only"),
    ("bloom", ["-e", "ntk"], "has no rotary embeddings"),
])
def test_a_refusal_is_one_line_exit_2_and_writes_nothing(family_paths, tmp_path, family, argv, phrase):
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "passkey", "--model", family_paths[family],
                           "--lengths", "256", "--samples", "1", "--out", str(out), *argv],
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("longctx")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and phrase in lines[0], proc.stderr[-2000:]
    assert not out.exists()


def test_a_length_where_every_sample_raised_fails_the_run(tmp_path):
    from types import SimpleNamespace

    from harness.errors import RunFailed
    from harness.experiment import check_errored

    rec = lambda n, err: SimpleNamespace(context_length=n, error=err)  # noqa: E731
    check_errored([rec(256, None), rec(256, "RuntimeError: x"), rec(512, None)], tmp_path)  # a miss-or-error mix
    with pytest.raises(RunFailed, match="every sample at 512 tokens failed .*RuntimeError: boom"):
        check_errored([rec(256, None), rec(512, "RuntimeError: boom"), rec(512, "RuntimeError: boom")], tmp_path)


@pytest.mark.parametrize("family", ["llama", "phi", "gpt-neox", "cohere", "smollm3"])
def test_dynamic_ntk_re_rotates_cached_keys_in_the_models_own_rotary_layout(family_paths, family):
    """Past the trained 512 tokens transformers' dynamic NTK recomputes the base for the whole sequence; decoding
    from a cache must give the same logits, which holds only if cached keys are re-rotated in the model's own layout
    (partial: Phi, GPT-NeoX; interleaved: Cohere; NoPE layers: SmolLM3)."""
    from extensions import EXTENSIONS
    from harness.runners.hf import HFRunner
    from transformers import AutoConfig

    path = family_paths[family]
    ext = EXTENSIONS.get("dynamic-ntk")()
    conf = ext.resolve(ext.parse({"factor": 2.0}), AutoConfig.from_pretrained(path))
    runner = HFRunner(device="cpu", dtype="float32")
    runner.load(path, ext, conf, max_length=600)
    ids = torch.randint(10, 500, (1, 560), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ext.before_request(runner.model, conf)
        cache = runner._new_cache()
        out = runner.model(input_ids=ids[:, :540], past_key_values=cache, use_cache=True)
        for t in range(540, 560):
            cache.before_decode(t + 1)
            out = runner.model(input_ids=ids[:, t:t + 1], past_key_values=cache, use_cache=True)
        cached = out.logits[0, -1]
        ext.before_request(runner.model, conf)
        full = runner.model(input_ids=ids).logits[0, -1]
    err = float((cached - full).abs().max())
    print(f"{family}: cached decode vs full forward, max error {err:.2e}")
    assert err <= 1e-4


def test_models_check_prints_the_profile_and_every_verdict(family_paths):
    import json
    import subprocess
    import sys

    def check(family, *argv):
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "models", "check", family_paths[family], *argv],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    out = json.loads(check("gemma2", "-e", "sinks", "-e", "yarn", "-r", "hf", "-r", "kernel", "--json"))
    assert "attention logit softcap 2" in out["profile"]["features"]
    verdicts = {(v["extension"], v["runner"]): v for v in out["verdicts"]}
    assert set(verdicts) == {("sinks", "hf"), ("sinks", "kernel"), ("yarn", "hf"), ("yarn", "kernel")}
    assert verdicts["sinks", "kernel"]["status"] == "composed"
    assert any("sliding windows (48) intersect" in n for n in verdicts["sinks", "kernel"]["notes"])
    text = check("llama3-scaled", "-e", "yarn", "-E", "replace=true", "-r", "hf")
    assert "RoPE scaled in training (llama3)" in text and "replaces the trained llama3 scaling" in text
    assert "refused" in check("llama3-scaled", "-e", "yarn", "-r", "hf")


def test_extensions_show_states_the_rule_for_a_trained_scaling(family_paths):
    """`longctx extensions show -m MODEL` says what each runner does with the method on that model: on a RoPE
    scaled in training, refused until replace=true, then composed (replacing it); per layer type, each type's own."""
    import json
    import subprocess
    import sys

    def show(family, *argv):
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "extensions", "show", "yarn", "-m",
                               family_paths[family], "--json", *argv], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    assert show("llama3-scaled")["support"]["hf"].startswith("refused: this llama model's RoPE was scaled")
    assert show("llama3-scaled", "-E", "replace=true")["support"]["hf"] == \
        "composed: replaces the trained llama3 scaling (-E replace=true)"
    per_type = show("gemma3", "-E", "factor=4")["per_layer_type"]
    assert set(per_type) == {"full_attention", "sliding_attention"}


def test_a_run_records_how_the_method_met_the_model(family_paths, tmp_path):
    """run.json keeps the verdict (composed, and how) and the features the loaded model showed."""
    import json

    from evals.base import TaskConfig
    from harness.experiment import Experiment, run

    exp = Experiment(task="passkey", task_config=TaskConfig(lengths=(256,), depths=(0.5,), samples=1),
                     model=family_paths["gemma2"], extension="sinks", extension_params={"window": 32},
                     runner="kernel", out=str(tmp_path / "run"))
    path = run(exp, log=lambda *_: None, progress=False)
    load = json.loads((path / "run.json").read_text())["invocations"][-1]["load"]
    assert load["support"].startswith("composed: the model's sliding windows (48) intersect")
    assert "attention logit softcap 2" in load["extra"]["model_features"]


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma", "phi", "gpt-neox", "stablelm", "cohere", "olmo2"])
def test_sinks_on_one_layer_equal_the_model_on_the_kept_tokens(tmp_path, smollm2_tokenizer, family):
    """StreamingLLM's definition, end to end: with one attention layer, the last position under sinks S + window W
    sees exactly the S first and W last tokens at in-cache positions 0 .. S + W − 1, so its logits equal the model's
    own forward over those S + W tokens. This holds only if the re-rotation of the query for its sink scores is the
    model's own rotation (half-split or interleaved pairs, full or partial)."""
    import dataclasses

    from extensions import EXTENSIONS
    from harness.runners.kernel import KernelRunner
    from transformers import AutoConfig, AutoModelForCausalLM

    fam = zoo.family(family)
    one = dataclasses.replace(fam, kwargs={**fam.kwargs, "num_hidden_layers": 1})
    path = zoo.save(one, smollm2_tokenizer, tmp_path / family)
    S, W = 4, 32
    ext = EXTENSIONS.get("sinks")()
    conf = ext.resolve(ext.parse({"sink_tokens": S, "window": W, "chunk": 16}), AutoConfig.from_pretrained(path))
    ids = prompt_ids()[:, :T]
    outs = []
    for runner in (KernelRunner(device="cpu", dtype="float32"), KernelRunner(device="cpu", dtype="float32",
                                                                              impl="reference")):
        runner.load(path, ext, conf, max_length=T)
        with torch.inference_mode():
            ours = runner._prefill(ids, runner._new_cache()).logits[0, -1].float()
        outs.append(ours)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    kept = torch.cat([ids[:, :S], ids[:, -W:]], dim=1)
    with torch.inference_mode():
        ref = model(input_ids=kept).logits[0, -1].float()
    err = max(float((o - ref).abs().max()) for o in outs)
    print(f"{family}: sinks {S}+{W} on one layer vs the model on the kept tokens, max error {err:.2e}")
    assert err <= ATOL


def test_a_model_the_probe_cannot_build_refuses_attention_level_methods():
    """When the random copy cannot be built, the profile says why, and methods that need the probe are refused
    (RoPE methods still decided from the config)."""
    from transformers import LlamaConfig

    from extensions import EXTENSIONS
    from harness.profile import read_profile
    from harness.runners import RUNNERS

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      vocab_size=1000, hidden_act="no-such-activation")
    prof = read_profile(cfg)
    assert prof.probe_error.startswith("cannot build the model from its config (KeyError")
    sinks, yarn = EXTENSIONS.get("sinks")(), EXTENSIONS.get("yarn")()
    verdict = decide(prof, sinks, sinks.parse({}), RUNNERS.get("hf"))
    assert verdict.status == REFUSED and "could not probe" in verdict.notes[0]
    assert decide(prof, yarn, yarn.parse({}), RUNNERS.get("hf")).status != REFUSED


@pytest.mark.parametrize("change,phrase", [
    ({"keywords": ("position_ids", "attention_chunk_size")}, "passes attention_chunk_size to its attention"),
    ({"layer_types": ("chunked_attention", "full_attention")}, "has chunked_attention layers"),
])
def test_attention_the_spec_does_not_read_is_refused_not_run(change, phrase):
    """A model unlike any tested one (a keyword its attention function receives that the spec does not read, a
    layer type that is neither plain, sliding nor recurrent) is refused on the kernel runner and for attention-level
    methods; plain methods on the hf runner run the model's own attention."""
    import dataclasses

    import transformers

    from extensions import EXTENSIONS
    from harness.profile import read_profile
    from harness.runners import RUNNERS

    fam = zoo.family("llama")
    prof = read_profile(getattr(transformers, fam.config_cls)(vocab_size=512, **zoo.SPECIAL_IDS, **fam.kwargs))
    if "keywords" in change:
        prof = dataclasses.replace(prof, attention=tuple(dataclasses.replace(la, keywords=change["keywords"])
                                                         for la in prof.attention))
    else:
        prof = dataclasses.replace(prof, layer_types=change["layer_types"])
    none, sinks = EXTENSIONS.get("none")(), EXTENSIONS.get("sinks")()
    for ext, runner in ((sinks, "hf"), (none, "kernel")):
        v = decide(prof, ext, ext.parse({}), RUNNERS.get(runner))
        assert v.status == REFUSED and phrase in v.notes[0], v
    assert decide(prof, none, none.parse({}), RUNNERS.get("hf")).status != REFUSED


def test_token_scoring_is_refused_where_the_head_is_not_reproduced(family_paths):
    """The load-time check compares the model's own logits with head + the profile's post-processing: a
    post-processing longctx does not know (here: Granite's division, hidden from the profile) refuses token scoring
    with one line instead of scoring wrong; the true profile passes."""
    import dataclasses

    from extensions import EXTENSIONS
    from harness.errors import UserError
    from harness.runners.hf import HFRunner

    ext = EXTENSIONS.get("none")()
    runner = HFRunner(device="cpu", dtype="float32")
    runner.load(family_paths["granite"], ext, ext.parse({}))
    assert runner._check_head() is None
    runner.profile = dataclasses.replace(runner.profile, logits_scaling=None)
    runner._head_differs = runner._check_head()
    assert "not its LM head's output" in runner._head_differs
    with pytest.raises(UserError, match="token scoring would be wrong"):
        runner.token_nll(prompt_ids())

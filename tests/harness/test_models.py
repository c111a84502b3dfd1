import pytest

from harness.errors import UserError
from harness.models import IMPORT_MARKER, resolve_model


def test_local_directory_without_config_is_refused(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_unknown_name_is_refused_without_touching_the_network():
    with pytest.raises(UserError, match="unknown model 'smollm3'"):
        resolve_model("smollm3")


def test_hub_id_passes_through_only_when_given_explicitly():
    """hf:ORG/NAME goes to transformers as ORG/NAME; a bare ORG/NAME that is no local directory is refused at once
    (no network retry), with the explicit form suggested."""
    assert resolve_model("hf:someorg/somemodel").path == "someorg/somemodel"
    with pytest.raises(UserError, match="no such directory.*write hf:someorg/somemodel"):
        resolve_model("someorg/somemodel")
    with pytest.raises(UserError, match="bad hub id"):
        resolve_model("hf:justaname")


def test_imported_smollm2_matches_the_gguf_loaded_by_transformers(smollm2_path):
    """The float32 checkpoint we save gives the same logits as transformers' own GGUF loader."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.models import KNOWN_MODELS

    gguf = KNOWN_MODELS["smollm2"].locate()
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    ours = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    assert ours.config.max_position_embeddings == 8192
    assert ours.config.rope_parameters["rope_theta"] == 100000.0
    ids = torch.tensor([[504, 1301, 1646, 314, 216, 33, 34, 35, 36, 37, 30]])
    with torch.inference_mode():
        a, b = ref(ids).logits, ours(ids).logits
    print("max abs logit diff", (a - b).abs().max().item())
    assert torch.equal(a, b)
    import json
    marker = json.loads((__import__("pathlib").Path(smollm2_path) / IMPORT_MARKER).read_text())
    assert marker["dtype"] == "float32"

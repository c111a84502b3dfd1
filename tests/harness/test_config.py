import pytest

from harness.config import format_length, parse_depths, parse_length, parse_lengths, parse_params
from harness.errors import UserError


@pytest.mark.parametrize("text,tokens", [("4k", 4096), ("16K", 16384), ("128k", 131072), ("1500", 1500),
                                         ("1.5k", 1536), ("1m", 1048576)])
def test_parse_length_uses_k_as_1024(text, tokens):
    assert parse_length(text) == tokens


@pytest.mark.parametrize("text", ["", "abc", "4kb", "-4k", "0", "1.3"])
def test_parse_length_rejects_garbage(text):
    with pytest.raises(UserError):
        parse_length(text)


def test_parse_lengths_sorts_and_deduplicates():
    assert parse_lengths("8k,4k,4096") == [4096, 8192]


def test_format_length_inverts_parse():
    assert [format_length(parse_length(t)) for t in ("4k", "128k", "1500")] == ["4k", "128k", "1500"]


def test_parse_depths_range_checked():
    assert parse_depths("0.9,0.1") == [0.1, 0.9]
    with pytest.raises(UserError):
        parse_depths("1.5")


def test_parse_params_types():
    assert parse_params(["factor=2", "beta=0.5", "flag=true", "name=x", "o=none"]) == {
        "factor": 2, "beta": 0.5, "flag": True, "name": "x", "o": None}
    with pytest.raises(UserError):
        parse_params(["factor"])

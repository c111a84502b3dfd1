from evals.haystack import split_sentences, strip_play_markdown
import pytest

from evals.scoring import (first_number, first_phone, first_uuid, first_word, score_all_references,
                           score_any_reference, score_number)


def test_strict_and_lenient_differ_where_they_should():
    assert score_number(" 48213. Remember it.", "48213").correct
    s = score_number(" the key, 1, is 48213", "48213")  # extraction picks the wrong number first
    assert not s.correct and s.lenient
    s = score_number(" 482134", "48213")  # a longer number is not the key, but contains it
    assert not s.correct and s.lenient
    assert not score_number("", "48213").lenient


def test_first_number():
    assert first_number("The key is 123 then 456") == "123"
    assert first_number("no digits") is None


def test_play_markdown_is_reduced_to_spoken_text():
    md = "# Play\n\n## ACT I\n\n_Enter A_\n\n**A**  \nWho goes there? Stand, _aside_ friend.\n\n**B**  \nA friend."
    assert strip_play_markdown(md) == "Who goes there? Stand, aside friend. A friend."
    assert split_sentences("Who goes there? Stand. A friend.") == ["Who goes there?", "Stand.", "A friend."]


def test_any_and_all_references_on_the_paris_example():
    refs = ["Paris", "City of Light"]
    any_ = score_any_reference("The answer is Paris.", refs)
    all_ = score_all_references("The answer is Paris.", refs)
    assert (any_.score, any_.metric, any_.correct, any_.lenient) == (1.0, "any-reference", True, True)
    assert (all_.score, all_.metric, all_.correct, all_.lenient) == (0.5, "all-references", False, False)
    assert all_.value == 0.5 and all_.extracted == "Paris"


def test_empty_prediction_scores_zero():
    for sc in (score_any_reference("", ["Paris"]), score_all_references("", ["Paris", "Rome"])):
        assert (sc.score, sc.correct, sc.lenient, sc.extracted) == (0.0, False, False, None)


def test_references_match_ignoring_case_but_strict_wants_exact_case():
    sc = score_all_references("paris and ROME", ["Paris", "Rome"])
    assert sc.score == 1.0 and sc.lenient and not sc.correct
    assert score_all_references("Paris and Rome", ["Paris", "Rome"]).correct


def test_strict_wants_whole_tokens_lenient_takes_substrings():
    sc = score_all_references(" 12345678, 7654321", ["1234567", "7654321"])
    assert sc.score == 1.0 and sc.lenient and not sc.correct
    sc = score_any_reference(" 12345678", ["1234567"])
    assert sc.score == 1.0 and sc.lenient and not sc.correct


def test_any_reference_with_an_extractor_compares_the_extracted_answer():
    assert score_any_reference(" 555-123-4567.", ["555-123-4567"], extract=first_phone).correct
    sc = score_any_reference(" 555-000-1111 or 555-123-4567", ["555-123-4567"], extract=first_phone)
    assert (sc.score, sc.correct, sc.lenient, sc.extracted) == (1.0, False, True, "555-000-1111")


def test_all_references_gives_partial_credit_by_fraction():
    assert score_all_references("A, C", ["A", "B", "C", "D"]).score == 0.5
    assert score_all_references("none of them", ["A1", "B2", "C3"]).score == 0.0


def test_no_references_is_an_internal_error():
    with pytest.raises(ValueError):
        score_all_references("x", [])
    with pytest.raises(ValueError):
        score_any_reference("x", [])


def test_answer_extractors():
    u = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
    assert first_uuid(f' "{u}", then more') == u
    assert first_uuid(f" a{u}") is None and first_uuid("no id") is None  # glued to more hex: not a UUID
    assert first_word(" 12 pelican, then") == "pelican" and first_word("123") is None
    assert first_phone(" call 415-555-0123.") == "415-555-0123"
    assert first_phone(" 1415-555-0123") is None and first_phone("555-0123") is None

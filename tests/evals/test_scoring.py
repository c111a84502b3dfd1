from evals.haystack import split_sentences, strip_play_markdown
from evals.scoring import first_number, score_number


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

"""The mapping's cell rules against their definitions (harmonize/mapping_rules.py)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from harmonize.mapping_rules import binary_word, combine, match_values, sentinel_hit

FLAGS = st.lists(st.sampled_from([0, 1, None]), min_size=1, max_size=6)


def _by_definition(rule: str, flags: list[int | None]) -> int | None:
    """Evaluate the rule on every completion of the unknown flags; keep an answer all agree on."""
    unknown = [i for i, f in enumerate(flags) if f is None]
    answers = set()
    for fill in itertools.product((0, 1), repeat=len(unknown)):
        full = list(flags)
        for i, v in zip(unknown, fill, strict=True):
            full[i] = v
        any_ = int(any(full))
        answers.add({"any_of": any_, "none_of": 1 - any_, "all_of": int(all(full))}[rule])
    return answers.pop() if len(answers) == 1 else None


@given(rule=st.sampled_from(["any_of", "none_of", "all_of"]), flags=FLAGS)
def test_combine_keeps_an_answer_exactly_when_every_completion_agrees(rule, flags):
    assert combine(rule, flags) == _by_definition(rule, flags)


def test_values_form_matches_parts_case_insensitively():
    cell = "t(8;21)(q22;q22.1); KMT2A::AFF1 "
    assert match_values("any_of", cell, ["kmt2a::aff1"], ";") == 1
    assert match_values("none_of", cell, ["inv(16)", "t(9;22)"], ";") == 1
    assert match_values("all_of", cell, ["KMT2A::AFF1", "inv(16)"], ";") == 0
    assert match_values("any_of", cell, ["KMT2A::AFF1"], None) == 0  # the whole cell is one value


def test_sentinels_match_text_exactly_and_numbers_by_value():
    assert sentinel_hit(" . ", ["."]) == "."
    assert sentinel_hit("NA", ["na"]) is None  # text sentinels are exact (the built-in NA words are not)
    assert [sentinel_hit(t, [89.0]) for t in ("89", "89.0", "089", "89.5", "x")] == [
        "89",
        "89",
        "89",
        None,
        None,
    ]
    assert sentinel_hit("89,0", [89.0], decimal=",") == "89" and sentinel_hit("89,0", [89.0]) is None
    assert sentinel_hit("-1", [-1.0, "unk"]) == "-1" and sentinel_hit("0.5", [0.5]) == "0.5"


def test_binary_words():
    assert [binary_word(t) for t in ("0", "1", "0.0", "1.0", "TRUE", "false", " True ")] == [
        0,
        1,
        0,
        1,
        1,
        0,
        1,
    ]
    assert [binary_word(t) for t in ("2", "0.5", "yes", "", "nan")] == [None] * 5

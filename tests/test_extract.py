"""Extraction machinery: map layout, fingerprinted cache, resume, provenance, bad input.

These tests drive ``extract_sketches`` with ``CountingSketcher`` (tests/mp_extract_worker.py), a
deterministic stand-in for the gradient layer that counts the rows it sketches, so the cache/resume
logic is checked independently of gradient numerics. ``tests/test_extract_gradients.py`` runs the real
``GradientSketcher``; ``tests/test_extract_processes.py`` the multi-process and kill-and-resume runs.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from mp_extract_worker import CountingSketcher, FakeGradientConfig, FakeSketchConfig

from hf_skmm.integrations import extract
from hf_skmm.integrations.extract import ExtractConfig, extract_sketches
from hf_skmm.integrations.provenance import check_source, get_provenance
from hf_skmm.testing import tiny_bert_classifier, tiny_gpt2, tiny_mlp, tiny_texts, tiny_tokenizer


@pytest.fixture(autouse=True)
def stand_in_sketcher(monkeypatch):
    CountingSketcher.rows_seen = 0
    CountingSketcher.sleep = 0.0
    monkeypatch.setattr(extract, "_build_sketcher", CountingSketcher)
    return CountingSketcher


@pytest.fixture
def bert():
    return tiny_bert_classifier(num_labels=2, seed=0)


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def texts():
    return Dataset.from_dict(tiny_texts(21, seed=3))


def _sketches(ds):
    table = ds.with_format("numpy")[:]
    return table["skmm_index"], table["skmm_sketch"]


def _run(model, dataset, cache, tokenizer=None, gc=None, sc=None, **kwargs):
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("rows_per_chunk", 8)
    return extract_sketches(
        model, dataset, gc or FakeGradientConfig(), sc or FakeSketchConfig(dim=5), tokenizer=tokenizer,
        cache_dir=cache, **kwargs,
    )  # fmt: skip


def _reference(model, dataset, tokenizer, dim=5, seed=0, batch_size=4):
    """The stand-in called directly, batch by batch, with the same padding collator."""
    from transformers import DataCollatorWithPadding

    sketcher = CountingSketcher(model, FakeGradientConfig(), FakeSketchConfig(dim=dim, seed=seed))
    collator = DataCollatorWithPadding(tokenizer)
    model.eval()
    out = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        enc = tokenizer(rows["text"])
        examples = [
            {"input_ids": i, "attention_mask": a} for i, a in zip(enc["input_ids"], enc["attention_mask"])
        ]
        out.append(sketcher(collator(examples), torch.arange(start, start + len(examples))))
    return torch.cat(out).numpy()


def test_columns_dtype_order_and_values(bert, tokenizer, texts, tmp_path):
    sketched = _run(bert, texts, tmp_path, tokenizer)
    assert sketched.column_names == ["skmm_index", "skmm_sketch"]
    assert str(sketched.features["skmm_index"].dtype) == "int64"
    assert sketched.features["skmm_sketch"].length == 5
    assert sketched.features["skmm_sketch"].feature.dtype == "float32"
    index, sketch = _sketches(sketched)
    assert sketch.dtype == np.float32 and sketch.shape == (21, 5)
    np.testing.assert_array_equal(index, np.arange(21))
    assert CountingSketcher.rows_seen == 21
    np.testing.assert_allclose(sketch, _reference(bert, texts, tokenizer), rtol=1e-5, atol=1e-5)


def test_result_does_not_depend_on_batch_size_or_chunking(bert, tokenizer, texts, tmp_path):
    a = _sketches(_run(bert, texts, tmp_path / "a", tokenizer, batch_size=2, rows_per_chunk=3))[1]
    b = _sketches(_run(bert, texts, tmp_path / "b", tokenizer, batch_size=8, rows_per_chunk=100))[1]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_second_call_reuses_cache_without_model_call(bert, tokenizer, texts, tmp_path):
    first = _run(bert, texts, tmp_path, tokenizer)
    calls = []
    handle = bert.register_forward_pre_hook(lambda *_: calls.append(1))
    CountingSketcher.rows_seen = 0
    second = _run(bert, texts, tmp_path, tokenizer, batch_size=7)  # batch size is not a cache ingredient
    handle.remove()
    assert calls == [] and CountingSketcher.rows_seen == 0
    np.testing.assert_array_equal(_sketches(first)[1], _sketches(second)[1])
    assert second._fingerprint == first._fingerprint == get_provenance(first)["fingerprint"]


def _changed_ingredients(bert, texts, tokenizer):
    """(name, kwargs for _run) for every ingredient that must invalidate the cache."""
    perturbed = tiny_bert_classifier(num_labels=2, seed=0)
    with torch.no_grad():
        perturbed.classifier.bias[0] += 1e-3
    return [
        ("sketch seed", dict(model=bert, dataset=texts, sc=FakeSketchConfig(dim=5, seed=1))),
        ("sketch dim", dict(model=bert, dataset=texts, sc=FakeSketchConfig(dim=4))),
        ("gradient config", dict(model=bert, dataset=texts, gc=FakeGradientConfig(params="last_layers"))),
        ("model weights", dict(model=perturbed, dataset=texts)),
        ("other model", dict(model=tiny_bert_classifier(num_labels=2, seed=1), dataset=texts)),
        ("dataset rows", dict(model=bert, dataset=texts.select(range(1, 21)))),
        ("dataset content", dict(model=bert, dataset=texts.map(lambda r: {"text": r["text"] + " good"}))),
        ("max_length", dict(model=bert, dataset=texts, max_length=4)),
    ]


def test_changing_any_ingredient_recomputes(bert, tokenizer, texts, tmp_path):
    base = _run(bert, texts, tmp_path, tokenizer)
    seen = {get_provenance(base)["fingerprint"]}
    for name, kwargs in _changed_ingredients(bert, texts, tokenizer):
        CountingSketcher.rows_seen = 0
        sketched = _run(tokenizer=tokenizer, cache=tmp_path, **kwargs)
        assert CountingSketcher.rows_seen == len(kwargs["dataset"]), name
        fingerprint = get_provenance(sketched)["fingerprint"]
        assert fingerprint not in seen, name
        seen.add(fingerprint)


def test_peft_adapter_config_is_an_ingredient(tokenizer, texts, tmp_path):
    from peft import LoraConfig, get_peft_model

    def lora(r):
        model = tiny_bert_classifier(num_labels=2, seed=0)
        torch.manual_seed(0)
        return get_peft_model(model, LoraConfig(r=r, target_modules=["query", "value"], task_type="SEQ_CLS"))

    a = _run(lora(2), texts, tmp_path, tokenizer)
    b = _run(lora(2), texts, tmp_path, tokenizer)
    c = _run(lora(4), texts, tmp_path, tokenizer)
    assert get_provenance(a)["fingerprint"] == get_provenance(b)["fingerprint"]
    assert get_provenance(c)["fingerprint"] != get_provenance(a)["fingerprint"]
    assert get_provenance(a)["adapter"]["adapters"]["default"]["r"] == 2
    assert CountingSketcher.rows_seen == 2 * len(texts)


def test_interrupted_run_resumes_without_loss_or_duplicates(bert, tokenizer, texts, tmp_path):
    reference = _sketches(_run(bert, texts, tmp_path / "ref", tokenizer))
    calls = {"n": 0}

    class Crashing(CountingSketcher):
        def __call__(self, batch, rows):
            calls["n"] += 1
            if calls["n"] == 5:  # chunks of 8 rows = 2 batches: chunks [0,8) and [8,16) finish first
                raise RuntimeError("simulated crash")
            return super().__call__(batch, rows)

    extract._build_sketcher = Crashing
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(bert, texts, tmp_path / "run", tokenizer)
    (work_dir,) = (tmp_path / "run").iterdir()
    finished = sorted(p.name for p in work_dir.iterdir())
    assert finished == ["chunk-000000000000-000000000008.arrow", "chunk-000000000008-000000000016.arrow"]
    (work_dir / "tmpdeadbeef").write_bytes(b"partial arrow bytes")  # what a killed writer leaves behind

    extract._build_sketcher = CountingSketcher
    CountingSketcher.rows_seen = 0
    resumed = _sketches(_run(bert, texts, tmp_path / "run", tokenizer))
    assert CountingSketcher.rows_seen == 21 - 16
    np.testing.assert_array_equal(resumed[0], np.arange(21))
    np.testing.assert_allclose(resumed[1], reference[1], rtol=1e-6, atol=1e-6)
    assert not (work_dir / "tmpdeadbeef").exists()


def test_resume_with_other_chunk_size_fills_the_gaps(bert, tokenizer, texts, tmp_path):
    reference = _sketches(_run(bert, texts, tmp_path / "ref", tokenizer))[1]
    first = _run(bert, texts, tmp_path / "run", tokenizer)
    (work_dir,) = (tmp_path / "run").iterdir()
    os.remove(work_dir / "manifest.json")
    os.remove(work_dir / "chunk-000000000008-000000000016.arrow")
    CountingSketcher.rows_seen = 0
    resumed = _run(bert, texts, tmp_path / "run", tokenizer, batch_size=3, rows_per_chunk=3)
    assert CountingSketcher.rows_seen == 8
    names = sorted(p.name for p in work_dir.iterdir() if p.name.startswith("chunk"))
    assert (
        "chunk-000000000008-000000000011.arrow" in names and "chunk-000000000014-000000000016.arrow" in names
    )
    np.testing.assert_allclose(_sketches(resumed)[1], reference, rtol=1e-6, atol=1e-6)
    assert len(resumed) == len(first) == 21


def test_provenance_survives_save_and_load(bert, tokenizer, texts, tmp_path):
    sketched = _run(bert, texts, tmp_path / "cache", tokenizer)
    sketched.save_to_disk(str(tmp_path / "saved"))
    reloaded = load_from_disk(str(tmp_path / "saved"))
    record = get_provenance(reloaded)
    assert record == get_provenance(sketched)
    assert record["source"] == {
        "fingerprint": texts._fingerprint,
        "num_rows": 21,
        "column_names": ["text", "label", "score"],
    }
    assert record["sketch_config"] == {"dim": 5, "seed": 0} and record["sketch_dim"] == 5
    assert record["model"]["class"].endswith("BertForSequenceClassification")
    assert check_source(reloaded, texts) == record
    other = Dataset.from_dict(tiny_texts(21, seed=4))
    with pytest.raises(ValueError, match="fingerprint"):
        check_source(reloaded, other)
    check_source(reloaded, other, strict=False)  # same row count: only a warning
    with pytest.raises(ValueError, match="20 rows"):
        check_source(reloaded, texts.select(range(20)), strict=False)
    with pytest.raises(ValueError, match="no hf_skmm provenance"):
        get_provenance(texts)


def test_pretokenised_dataset_and_default_collator(tmp_path):
    tok = tiny_tokenizer()
    data = Dataset.from_dict(tiny_texts(10, seed=0)).map(
        lambda b: tok(b["text"], padding="max_length", max_length=16), batched=True
    )
    sketched = _run(tiny_bert_classifier(num_labels=2), data, tmp_path)  # no tokenizer: already padded
    assert len(sketched) == 10
    # "score" and "text" are not forward() arguments: dropped before collating, like Trainer does
    assert get_provenance(sketched)["preprocessing"]["columns"] == ["label", "input_ids", "attention_mask"]


def test_plain_module_with_feature_column(tmp_path):
    x = torch.randn(12, 8, generator=torch.Generator().manual_seed(0))
    data = Dataset.from_dict(
        {"features": x.tolist(), "label": [i % 3 for i in range(12)], "note": ["n"] * 12}
    )
    model = tiny_mlp()
    _index, sketch = _sketches(_run(model, data, tmp_path))
    model.eval()
    proj = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    expected = model(x).detach() @ proj + 0.01 * torch.arange(12.0)[:, None]
    np.testing.assert_allclose(sketch, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_causal_lm_needs_no_label_column(tokenizer, tmp_path):
    data = Dataset.from_dict({"text": tiny_texts(6)["text"]})
    sketched = _run(tiny_gpt2(), data, tmp_path, tokenizer)
    assert len(sketched) == 6


def test_model_device_and_training_mode_restored(bert, tokenizer, texts, tmp_path):
    bert.train()
    _run(bert, texts, tmp_path, tokenizer)
    assert bert.training
    assert next(bert.parameters()).device.type == "cpu"


def test_default_cache_root_for_in_memory_and_file_datasets(bert, tokenizer, texts, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    _run(bert, texts, None, tokenizer)
    assert len(list((tmp_path / "hf_cache" / "hf_skmm").iterdir())) == 1
    texts.save_to_disk(str(tmp_path / "saved"))
    on_disk = load_from_disk(str(tmp_path / "saved"))
    assert on_disk.cache_files
    _run(bert, on_disk, None, tokenizer)
    assert len(list((tmp_path / "saved" / "hf_skmm").iterdir())) == 1


# ------------------------------------------------------------------------------------------ bad input


def _assert_nothing_written(cache):
    assert not cache.exists() or not any(p.is_dir() for p in cache.iterdir())


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("empty", "dataset is empty"),
        ("missing_inputs", r"no column \['input_ids'\]"),
        ("raw_text_no_tokenizer", "raw text .* tokenizer=None"),
        ("missing_labels", "target='loss' needs a label column"),
        ("ragged_no_collator", "sequences of different lengths"),
        ("bad_label_column", "label_column='y'"),
        ("bad_text_column", "text_column='body'"),
        ("batch_size", "batch_size must be a positive integer, got 0"),
        ("model_hash", "model_hash='fast'"),
    ],
)
def test_bad_input_raises_clear_error_and_writes_nothing(case, match, bert, tokenizer, texts, tmp_path):
    cache = tmp_path / "cache"
    kwargs: dict = {"model": bert, "dataset": texts, "tokenizer": tokenizer}
    if case == "empty":
        kwargs["dataset"] = texts.select([])
    elif case == "missing_inputs":
        kwargs.update(dataset=texts.remove_columns("text"), tokenizer=None)
    elif case == "raw_text_no_tokenizer":
        kwargs["tokenizer"] = None
    elif case == "missing_labels":
        kwargs["dataset"] = texts.remove_columns("label")
    elif case == "ragged_no_collator":
        kwargs.update(dataset=texts.map(lambda b: tokenizer(b["text"]), batched=True), tokenizer=None)
    elif case == "bad_label_column":
        kwargs["label_column"] = "y"
    elif case == "bad_text_column":
        kwargs["text_column"] = "body"
    elif case == "batch_size":
        kwargs["batch_size"] = 0
    elif case == "model_hash":
        kwargs["model_hash"] = "fast"
    with pytest.raises(ValueError, match=match):
        _run(cache=cache, **kwargs)
    _assert_nothing_written(cache)
    assert CountingSketcher.rows_seen == 0


def test_non_writable_cache_dir(bert, tokenizer, texts, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=r"cache_dir=.*a_file/sub.* is not a writable folder"):
        _run(bert, texts, blocker / "sub", tokenizer)


def test_non_dataset_input(bert, tmp_path):
    with pytest.raises(TypeError, match=r"datasets\.Dataset"):
        _run(bert, {"text": ["a"]}, tmp_path)


def test_collator_failure_is_reported_before_any_work(bert, tokenizer, texts, tmp_path):
    def broken(_examples):
        raise KeyError("pixel_values")

    with pytest.raises(ValueError, match="data collator cannot batch"):
        _run(bert, texts, tmp_path / "cache", tokenizer, data_collator=broken)
    _assert_nothing_written(tmp_path / "cache")


def test_extract_config_validates_and_round_trips():
    config = ExtractConfig(batch_size=8, max_length=32, text_column="sentence")
    assert ExtractConfig(**dataclasses.asdict(config)) == config
    assert config.to_kwargs()["batch_size"] == 8
    with pytest.raises(ValueError, match="rows_per_chunk must be a positive integer, got -1"):
        ExtractConfig(rows_per_chunk=-1)
    with pytest.raises(ValueError, match="max_length"):
        ExtractConfig(max_length=0)


def test_extract_config_parses_with_hf_argument_parser():
    from transformers import HfArgumentParser

    (config,) = HfArgumentParser(ExtractConfig).parse_args_into_dataclasses(
        ["--batch_size", "16", "--cache_dir", "/tmp/x"]
    )
    assert config == ExtractConfig(batch_size=16, cache_dir="/tmp/x")

"""The whole recipe on a tiny in-code BERT and tiny texts: extract → select → export → train → evaluate."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch

from hf_skmm.integrations.recipe import (
    RecipeConfig,
    encode_features,
    extract_step,
    prepare_task,
    run_recipe,
    select_step,
)
from hf_skmm.integrations.trainer import LinearProbe, TrainConfig, per_example_loss
from hf_skmm.testing import tiny_bert_classifier, tiny_texts, tiny_tokenizer

FAST_TRAIN = TrainConfig(min_steps=15, num_epochs=1, learning_rate=0.05, batch_size=8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(task: str, num: int = 96):
    d = datasets.Dataset.from_dict(tiny_texts(num, seed=0))
    if task == "regression":
        d = d.remove_columns("label").rename_column("score", "label")
    else:
        d = d.remove_columns("score")
    return d.train_test_split(test_size=0.25, seed=0)


def _config(tmp_path, **kw):
    base = dict(n=10, sketch_dim=8, output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return RecipeConfig(**base)


def test_linear_probe_on_cached_features_is_the_full_models_head(tmp_path):
    """Same maths: classifier(pooler features) == BertForSequenceClassification logits, same head gradients."""
    model = tiny_bert_classifier(num_labels=3).eval()
    tok = tiny_tokenizer()
    data = datasets.Dataset.from_dict(tiny_texts(12, seed=1))
    feats = encode_features(data, model.bert, tok, "tiny", pooling="pooler", max_length=32)
    probe = LinearProbe(16, 3, init="random")
    probe.classifier.load_state_dict(model.classifier.state_dict())
    x = torch.tensor(np.asarray(feats["features"]), dtype=torch.float32)
    y = torch.tensor(list(data["label"]))
    tokens = tok(list(data["text"]), padding=True, truncation=True, max_length=32, return_tensors="pt")
    full_logits = model(**tokens).logits
    torch.testing.assert_close(probe(features=x).logits, full_logits, rtol=1e-5, atol=1e-5)
    for i in range(3):  # per-example head gradients agree too
        g_full = torch.autograd.grad(
            per_example_loss(
                model(**{k: v[i : i + 1] for k, v in tokens.items()}).logits, y[i : i + 1], "classification"
            ).sum(),
            model.classifier.weight,
        )[0]
        g_probe = torch.autograd.grad(
            per_example_loss(probe(features=x[i : i + 1]).logits, y[i : i + 1], "classification").sum(),
            probe.classifier.weight,
        )[0]
        torch.testing.assert_close(g_probe, g_full, rtol=1e-4, atol=1e-6)


def test_encode_features_is_cached_on_disk(tmp_path):
    model = tiny_bert_classifier(num_labels=2).eval()
    data = datasets.Dataset.from_dict(tiny_texts(20, seed=2))
    kw = dict(encoder=model.bert, tokenizer=tiny_tokenizer(), model_id="tiny", cache_dir=tmp_path)
    first = encode_features(data, **kw)
    files = sorted(p.name for p in tmp_path.glob("features-*.arrow"))
    assert len(files) == 1
    second = encode_features(data, **kw)
    assert sorted(p.name for p in tmp_path.glob("features-*.arrow")) == files
    np.testing.assert_array_equal(np.asarray(first["features"]), np.asarray(second["features"]))
    pooler = encode_features(data, pooling="pooler", **kw)  # another key: another cache file
    assert len(list(tmp_path.glob("features-*.arrow"))) == 2
    assert not np.allclose(np.asarray(pooler["features"]), np.asarray(first["features"]))
    with pytest.raises(ValueError, match="pooling"):
        encode_features(data, pooling="max", **kw)


def test_recipe_linear_probe_regression_end_to_end(tmp_path):
    from hf_skmm.integrations.coreset import load_coreset

    config = _config(tmp_path, task="regression", seeds=[0, 1], compare_weighted=True)
    payload = run_recipe(
        config,
        FAST_TRAIN,
        data=_data("regression"),
        encoder=tiny_bert_classifier(1),
        tokenizer=tiny_tokenizer(),
    )
    report = tmp_path / "out" / "report"
    saved = json.loads((report / "results.json").read_text())
    assert saved["aggregate"].keys() == {"skmm", "uniform", "skmm+weighted"}
    assert len(saved["runs"]) == 2 * 3
    for run in saved["runs"]:
        assert run["n"] == 10 and np.isfinite(run["mse"]) and -1 <= run["pearson"] <= 1
        assert run["train_steps"] == 15
    assert saved["headline"]["metric"] == "mse" and saved["headline"]["baseline"] == "uniform"
    assert "skmm vs uniform" in (report / "summary.md").read_text()
    assert payload["headline"] == saved["headline"]
    coreset, result = load_coreset(tmp_path / "out" / "coresets" / "skmm-n10-seed0")
    assert len(coreset) == 10 and "skmm_weight" in coreset.column_names and "text" in coreset.column_names
    np.testing.assert_array_equal(np.sort(coreset["skmm_index"]), np.sort(result.indices))
    card = (tmp_path / "out" / "coresets" / "skmm-n10-seed0" / "README.md").read_text()
    assert "(frozen, mean pooling) + linear probe" in card  # the card names what the probe was trained on


def test_same_seed_same_coreset(tmp_path):
    config = _config(tmp_path, task="classification")
    prepared = prepare_task(
        config, data=_data("classification"), encoder=tiny_bert_classifier(2), tokenizer=tiny_tokenizer()
    )
    picks = []
    for _ in range(2):
        sketched = extract_step(prepared, config, seed=3)
        _, result = select_step(prepared, sketched, config, "skmm", seed=3)
        picks.append(result.indices)
    np.testing.assert_array_equal(picks[0], picks[1])


def test_recipe_lora_classification(tmp_path):
    config = _config(tmp_path, task="classification", mode="lora", seeds=[0], lora_r=2, save_coresets=False)
    data = _data("classification", num=64)
    prepared = prepare_task(config, data=data, encoder=tiny_bert_classifier(2), tokenizer=tiny_tokenizer())
    model = prepared.build_model(0)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name or "classifier" in name for name in trainable)
    payload = run_recipe(
        config, FAST_TRAIN, data=data, encoder=tiny_bert_classifier(2), tokenizer=tiny_tokenizer()
    )
    assert {r["method"] for r in payload["runs"]} == {"skmm", "uniform"}
    for run in payload["runs"]:
        assert 0.0 <= run["accuracy"] <= 1.0 and 0.0 <= run["macro_f1"] <= 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"task": "ranking"}, "task"),
        ({"mode": "full"}, "mode"),
        ({"n": 0}, "n"),
        ({"methods": []}, "methods"),
        ({"seeds": [-1]}, "seeds"),
        ({"c_s": 1.5}, "c_s"),
        ({"pool_size": 5, "n": 10}, "pool_size"),
        ({"gradient_target": "logits"}, "gradient_target"),
    ],
)
def test_recipe_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RecipeConfig(**kwargs)


def test_probability_methods_need_classification(tmp_path):
    config = _config(tmp_path, task="regression")
    prepared = prepare_task(
        config, data=_data("regression"), encoder=tiny_bert_classifier(1), tokenizer=tiny_tokenizer()
    )
    sketched = extract_step(prepared, config, seed=0)
    with pytest.raises(ValueError, match="probabilities"):
        select_step(prepared, sketched, config, "margin", seed=0)

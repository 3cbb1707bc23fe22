"""``extract_sketches`` with the real gradient layer equals calling ``GradientSketcher`` batch by batch.

Tiny BERT (classification head, loss target) and tiny GPT-2 with a LoRA adapter (causal-LM loss,
no label column) on in-code texts tokenised with the in-code tokenizer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding

from hf_skmm import GradientConfig, GradientSketcher, SketchConfig, extract_sketches
from hf_skmm.integrations.provenance import get_provenance
from hf_skmm.testing import tiny_bert_classifier, tiny_gpt2, tiny_texts, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _direct(model, dataset, gradient_config, sketch_config, tokenizer, batch_size, columns):
    """The reference: the gradient layer called on collated batches in a plain loop."""
    model.eval()
    sketcher = GradientSketcher(model, gradient_config, sketch_config)
    collator = DataCollatorWithPadding(tokenizer)
    out = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        encoded = tokenizer(rows["text"])
        examples = [
            {
                **{k: encoded[k][i] for k in ("input_ids", "attention_mask")},
                **{c: rows[c][i] for c in columns},
            }
            for i in range(len(rows["text"]))
        ]
        out.append(sketcher(collator(examples), torch.arange(start, start + len(examples))))
    return torch.cat(out).numpy()


def _sketches(sketched):
    table = sketched.with_format("numpy")[:]
    return table["skmm_index"], table["skmm_sketch"]


def test_bert_head_loss_equals_gradient_layer(tokenizer, tmp_path):
    model = tiny_bert_classifier(num_labels=3, seed=0)
    dataset = Dataset.from_dict(tiny_texts(18, seed=2))
    gc, sc = GradientConfig(params="head", target="loss"), SketchConfig(kind="gaussian", dim=12, seed=3)
    sketched = extract_sketches(model, dataset, gc, sc, tokenizer=tokenizer, batch_size=5, cache_dir=tmp_path)
    index, sketch = _sketches(sketched)
    assert sketch.shape == (18, 12) and sketch.dtype == np.float32
    np.testing.assert_array_equal(index, np.arange(18))
    expected = _direct(model, dataset, gc, sc, tokenizer, 5, ["label"])
    np.testing.assert_allclose(sketch, expected, rtol=1e-5, atol=1e-6)
    record = get_provenance(sketched)
    assert record["gradient_config"]["params"] == "head" and record["sketch_config"]["dim"] == 12
    assert record["sketcher"]["num_params"] == 16 * 3 + 3

    # second call: served from the cache, the model is never run
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    again = extract_sketches(model, dataset, gc, sc, tokenizer=tokenizer, batch_size=7, cache_dir=tmp_path)
    assert calls == []
    np.testing.assert_array_equal(_sketches(again)[1], sketch)
    # a speed-only knob of the gradient layer does not invalidate the cache; the seed does
    extract_sketches(model, dataset, GradientConfig(params="head", chunk_size=2), sc, tokenizer=tokenizer,
                     cache_dir=tmp_path)  # fmt: skip
    assert calls == []
    reseeded = extract_sketches(
        model,
        dataset,
        gc,
        SketchConfig(kind="gaussian", dim=12, seed=4),
        tokenizer=tokenizer,
        cache_dir=tmp_path,
    )
    handle.remove()
    assert calls and not np.allclose(_sketches(reseeded)[1], sketch)


def test_gpt2_lora_causal_lm_without_labels(tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = tiny_gpt2(seed=0)
    torch.manual_seed(1)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True))
    with torch.no_grad():  # a non-zero lora_B so the lora_A gradients are not all zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    dataset = Dataset.from_dict({"text": tiny_texts(10, seed=5)["text"]})
    gc, sc = GradientConfig(params="lora", target="loss"), SketchConfig(kind="sparse_sign", dim=16, seed=0)
    sketched = extract_sketches(model, dataset, gc, sc, tokenizer=tokenizer, batch_size=4, cache_dir=tmp_path)
    _, sketch = _sketches(sketched)
    np.testing.assert_allclose(
        sketch, _direct(model, dataset, gc, sc, tokenizer, 4, []), rtol=1e-5, atol=1e-6
    )
    assert np.abs(sketch).max() > 0
    assert get_provenance(sketched)["adapter"]["adapters"]["default"]["r"] == 2


def test_random_label_target_does_not_depend_on_batching(tokenizer, tmp_path):
    model = tiny_bert_classifier(num_labels=3, seed=0)
    dataset = Dataset.from_dict({"text": tiny_texts(13, seed=6)["text"]})  # no labels needed
    gc, sc = GradientConfig(params="head", target="random_label"), SketchConfig(dim=8, seed=11)
    with torch.no_grad():  # the caller's no_grad does not stop the gradient layer
        a = extract_sketches(
            model, dataset, gc, sc, tokenizer=tokenizer, batch_size=2, cache_dir=tmp_path / "a"
        )
    b = extract_sketches(model, dataset, gc, sc, tokenizer=tokenizer, batch_size=13, cache_dir=tmp_path / "b",
                         rows_per_chunk=13)  # fmt: skip
    np.testing.assert_allclose(_sketches(a)[1], _sketches(b)[1], rtol=1e-5, atol=1e-6)

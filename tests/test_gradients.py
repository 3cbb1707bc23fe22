"""Per-example gradients: both engines against an explicit per-example ``loss.backward()`` loop.

The reference never touches hf_skmm's loss code: it runs each example *alone and unpadded* through the
model with its labels, takes transformers' own ``.loss`` (or a hand-written one for the plain MLP),
calls ``backward()`` and flattens ``p.grad`` in ``named_parameters`` order. The engines see padded
batches, so every comparison also checks that padding contributes nothing.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from hf_skmm.gradients import (
    GradientConfig,
    GradientSketcher,
    build_layout,
    find_blocks,
    select_parameter_names,
)
from hf_skmm.gradients.losses import output_projection
from hf_skmm.sketch import SketchConfig
from hf_skmm.testing import (
    tiny_bert_classifier,
    tiny_bert_token_classifier,
    tiny_gpt2,
    tiny_mlp,
    tiny_texts,
    tiny_tokenizer,
)

N = 5
TOL = 2e-5


# tiny ops on a shared 2-core machine: one intra-op thread (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def texts():
    return tiny_texts(N, seed=1)


def _lora(model, targets, **kw):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=targets, **kw))
    with torch.no_grad():  # B = 0 at init would make A's gradient vanish: randomise it
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return peft_model


def _reference(model, names, examples, loss_fn=None):
    """Explicit loop: one example at a time, ``loss.backward()``, flatten the selected ``.grad``s."""
    params = dict(model.named_parameters())
    flags = {n: p.requires_grad for n, p in params.items()}
    for n in names:
        params[n].requires_grad_(True)
    was_training = model.training
    model.eval()
    rows = []
    for ex in examples:
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model, ex) if loss_fn else model(**ex).loss
        loss.backward()
        rows.append(torch.cat([params[n].grad.reshape(-1) for n in names]))
    model.zero_grad(set_to_none=True)
    for n, p in params.items():
        p.requires_grad_(flags[n])
    model.train(was_training)
    return torch.stack(rows).float()


def _seq_cls_data(tok, texts, labels):
    batch = dict(tok(texts["text"], padding=True, return_tensors="pt"), labels=labels)
    examples = [
        dict(tok([t], return_tensors="pt"), labels=labels[i : i + 1]) for i, t in enumerate(texts["text"])
    ]
    return batch, examples


def _lm_data(tok, texts):
    batch = dict(tok(texts["text"], padding=True, return_tensors="pt"))
    examples = []
    for t in texts["text"]:
        enc = tok([t], return_tensors="pt")
        examples.append(dict(enc, labels=enc["input_ids"]))
    return batch, examples


def _token_data(tok, texts):
    gen = torch.Generator().manual_seed(0)
    batch = dict(tok(texts["text"], padding=True, return_tensors="pt"))
    labels = torch.randint(0, 3, batch["input_ids"].shape, generator=gen)
    labels[batch["attention_mask"] == 0] = -100
    labels[:, 0] = -100  # [CLS] ignored, as a real token-classification collator does
    batch["labels"] = labels
    examples = []
    for i, t in enumerate(texts["text"]):
        enc = tok([t], return_tensors="pt")
        examples.append(dict(enc, labels=labels[i : i + 1, : enc["input_ids"].shape[1]]))
    return batch, examples


def _check_engines(model, cfg, batch, examples, engines, loss_fn=None, sketch_kind="gaussian", m=24):
    """Both engines == reference (unsketched) and == reference @ Γ (sketched with the same Γ)."""
    results = {}
    ref = None
    for engine in engines:
        sk = GradientSketcher(
            model, GradientConfig(**{**cfg, "engine": engine}), SketchConfig(kind=sketch_kind, dim=m)
        )
        if ref is None:
            ref = _reference(model, sk.param_names, examples, loss_fn)
        grads = sk.per_example_gradients(batch)
        assert grads.shape == (len(examples), sk.num_params) == ref.shape
        scale = ref.abs().max()
        assert scale > 0
        torch.testing.assert_close(grads, ref, atol=TOL * scale, rtol=1e-4)
        sketched = sk(batch, row_indices=torch.arange(len(examples)))
        expected = ref @ sk.sketch.dense()
        assert sketched.shape == (len(examples), m) and sketched.dtype == torch.float32
        torch.testing.assert_close(sketched, expected, atol=1e-4 * expected.abs().max(), rtol=1e-4)
        results[engine] = sketched
    if len(results) == 2:
        a, b = results.values()
        torch.testing.assert_close(a, b, atol=1e-4 * a.abs().max(), rtol=1e-4)


# ----------------------------------------------------------------------------- config


def test_config_defaults_round_trip_and_parser():
    from transformers import HfArgumentParser

    cfg = GradientConfig(params="names", param_names=["classifier.weight"], target="random_label")
    assert GradientConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    (parsed,) = HfArgumentParser([GradientConfig]).parse_args_into_dataclasses(
        args=["--params", "last_k", "--last_k", "2", "--target", "pseudo_label", "--engine", "generic"]
    )
    assert parsed == GradientConfig(params="last_k", last_k=2, target="pseudo_label", engine="generic")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"params": "everything"}, "GradientConfig.params"),
        ({"target": "logits"}, "GradientConfig.target"),
        ({"task": "ranking"}, "GradientConfig.task"),
        ({"engine": "fast"}, "GradientConfig.engine"),
        ({"last_k": 0}, "GradientConfig.last_k"),
        ({"params": "names"}, "GradientConfig.param_names"),
        ({"param_names": ["x"]}, "GradientConfig.param_names"),
        ({"task": "regression", "target": "pseudo_label"}, "GradientConfig.target"),
        ({"chunk_size": -1}, "GradientConfig.chunk_size"),
    ],
)
def test_config_errors_name_field_and_value(kwargs, needle):
    with pytest.raises(ValueError, match=needle) as err:
        GradientConfig(**kwargs)
    assert repr(next(iter(kwargs.values())))[:6].strip("'[") in str(err.value)


def test_config_from_dict_unknown_key():
    with pytest.raises(ValueError, match="unknown key"):
        GradientConfig.from_dict({"params": "head", "lr": 1})


# ----------------------------------------------------------------------------- parameter selection


def test_parameter_selection_bert_and_mlp():
    bert = tiny_bert_classifier()
    assert select_parameter_names(bert, GradientConfig()) == ["classifier.weight", "classifier.bias"]
    last = select_parameter_names(bert, GradientConfig(params="last_k", last_k=1))
    assert last[0].startswith("bert.encoder.layer.1.") and "bert.pooler.dense.weight" in last
    assert last[-2:] == ["classifier.weight", "classifier.bias"]
    assert not any("layer.0." in n for n in last)
    assert find_blocks(bert) == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    names = select_parameter_names(
        bert, GradientConfig(params="names", param_names=[r".*query\.weight", "classifier"])
    )
    assert names == [
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.1.attention.self.query.weight",
        "classifier.weight",
        "classifier.bias",
    ]
    pooler = select_parameter_names(bert, GradientConfig(head_name="pooler.dense"))
    assert pooler == ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]
    mlp = tiny_mlp()
    assert select_parameter_names(mlp, GradientConfig()) == ["head.weight", "head.bias"]
    assert select_parameter_names(mlp, GradientConfig(params="last_k", last_k=2))[0] == "body.0.weight"
    layout = build_layout(mlp, ["body.0.weight", "head.bias"])
    assert [b.offset for b in layout] == [0, 8 * 16]
    assert [(b.role, b.layer) for b in layout] == [("weight", "linear"), ("bias", "linear")]


def test_lora_selection_and_structured_support():
    peft_model = _lora(tiny_bert_classifier(), ["query", "value"], task_type="SEQ_CLS")
    names = select_parameter_names(peft_model, GradientConfig(params="lora"))
    assert names and all("lora_" in n for n in names) and len(names) == 2 * 2 * 2
    sk = GradientSketcher(peft_model, GradientConfig(params="lora"), SketchConfig(dim=8))
    assert sk.engine == "structured"
    gpt = _lora(tiny_gpt2(), ["c_attn"], fan_in_fan_out=True)
    layout = build_layout(gpt, select_parameter_names(gpt, GradientConfig(params="lora")))
    assert all(b.layer == "linear" for b in layout)
    # LayerNorms and a tied LM head are not linear-layer blocks: auto picks the generic engine
    assert (
        GradientSketcher(tiny_gpt2(), GradientConfig(params="head"), SketchConfig(dim=8)).engine == "generic"
    )
    assert (
        GradientSketcher(tiny_bert_classifier(), GradientConfig(params="last_k"), SketchConfig(dim=8)).engine
        == "generic"
    )


@pytest.mark.parametrize(
    ("model_fn", "cfg", "needle"),
    [
        (tiny_bert_classifier, GradientConfig(params="lora"), "params: got 'lora'.*get_peft_model"),
        (tiny_bert_classifier, GradientConfig(params="names", param_names=["nope.weight"]), "'nope.weight'"),
        (tiny_bert_classifier, GradientConfig(params="last_k", last_k=3), "last_k: got 3 .* only 2 blocks"),
        (tiny_mlp, GradientConfig(params="last_k", last_k=5), "last_k: got 5"),
        (tiny_bert_classifier, GradientConfig(head_name="decoder"), "head_name: got 'decoder'"),
        (
            tiny_bert_classifier,
            GradientConfig(params="last_k", engine="structured"),
            "engine: got 'structured'",
        ),
        (
            lambda: tiny_bert_classifier(num_labels=1),
            GradientConfig(target="pseudo_label"),
            "target: got 'pseudo_label'",
        ),
    ],
)
def test_bad_selection_errors(model_fn, cfg, needle):
    with pytest.raises(ValueError, match=needle):
        GradientSketcher(model_fn(), cfg, SketchConfig(dim=8))


def test_missing_labels_and_row_indices_errors(tok, texts):
    model = tiny_bert_classifier()
    batch = dict(tok(texts["text"], padding=True, return_tensors="pt"))
    with pytest.raises(ValueError, match=r"no 'labels' with GradientConfig\.target='loss'"):
        GradientSketcher(model, GradientConfig(), SketchConfig(dim=8))(batch)
    with pytest.raises(ValueError, match="row_indices: got None"):
        GradientSketcher(model, GradientConfig(target="random_label"), SketchConfig(dim=8))(batch)
    with pytest.raises(ValueError, match="row_indices: got 2 row numbers for a batch of 5"):
        GradientSketcher(model, GradientConfig(target="random_label"), SketchConfig(dim=8))(
            batch, row_indices=torch.arange(2)
        )


# ----------------------------------------------------------------------------- engines vs reference


def test_bert_head_both_engines(tok, texts):
    model = tiny_bert_classifier()
    batch, examples = _seq_cls_data(tok, texts, torch.tensor([0, 1, 2, 1, 0]))
    _check_engines(model, {"params": "head"}, batch, examples, ["structured", "generic"])
    _check_engines(
        model, {"params": "head"}, batch, examples, ["structured", "generic"], sketch_kind="kronecker"
    )


def test_bert_regression_head(tok, texts):
    model = tiny_bert_classifier(num_labels=1)
    batch, examples = _seq_cls_data(tok, texts, torch.tensor(texts["score"], dtype=torch.float32))
    _check_engines(
        model, {"params": "head"}, batch, examples, ["structured", "generic"], sketch_kind="sparse_sign"
    )


def test_bert_last_k_generic(tok, texts):
    model = tiny_bert_classifier()
    batch, examples = _seq_cls_data(tok, texts, torch.tensor([2, 1, 0, 1, 0]))
    _check_engines(
        model, {"params": "last_k", "last_k": 1}, batch, examples, ["generic"], sketch_kind="kronecker"
    )


def test_bert_lora_both_engines(tok, texts):
    model = _lora(tiny_bert_classifier(), ["query", "value"], task_type="SEQ_CLS")
    batch, examples = _seq_cls_data(tok, texts, torch.tensor([0, 1, 2, 1, 0]))
    for kind in ("kronecker", "gaussian"):
        _check_engines(
            model, {"params": "lora"}, batch, examples, ["structured", "generic"], sketch_kind=kind
        )


def test_bert_token_classification_head(tok, texts):
    model = tiny_bert_token_classifier()
    batch, examples = _token_data(tok, texts)
    _check_engines(
        model, {"params": "head"}, batch, examples, ["structured", "generic"], sketch_kind="kronecker"
    )


def test_gpt2_lora_causal_lm_both_engines(tok, texts):
    model = _lora(tiny_gpt2(), ["c_attn"], fan_in_fan_out=True)
    batch, examples = _lm_data(tok, texts)
    _check_engines(
        model, {"params": "lora"}, batch, examples, ["structured", "generic"], sketch_kind="kronecker"
    )


def test_gpt2_last_k_and_conv1d_structured(tok, texts):
    model = tiny_gpt2()
    batch, examples = _lm_data(tok, texts)
    _check_engines(model, {"params": "last_k", "last_k": 1}, batch, examples, ["generic"])
    # the LM head is tied to the input embedding: one block, gradient of both uses (functional_call re-ties)
    _check_engines(model, {"params": "head"}, batch, examples, ["generic"], sketch_kind="sparse_sign")
    # Conv1D weights ([d_in, d_out]) through the structured engine, Kronecker-sketched from factors
    cfg = {"params": "names", "param_names": [r"transformer\.h\.1\.(attn|mlp)\.c_.*"]}
    _check_engines(model, cfg, batch, examples, ["structured", "generic"], sketch_kind="kronecker")


def _mlp_loss(model, ex):
    return F.cross_entropy(model(ex["features"]), ex["labels"])


def test_mlp_last_k_vmap_and_loop(texts):
    model = tiny_mlp()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, 8, generator=gen), torch.randint(0, 3, (N,), generator=gen)
    batch = {"features": x, "labels": y}
    examples = [{"features": x[i : i + 1], "labels": y[i : i + 1]} for i in range(N)]
    _check_engines(
        model, {"params": "last_k", "last_k": 2}, batch, examples, ["structured", "generic"], _mlp_loss
    )
    # the vmap path (the MLP has no data-dependent control flow) and the loop give the same numbers
    on = GradientSketcher(model, GradientConfig(params="last_k", engine="generic", vmap="on", chunk_size=2))
    off = GradientSketcher(model, GradientConfig(params="last_k", engine="generic", vmap="off"))
    torch.testing.assert_close(on.per_example_gradients(batch), off.per_example_gradients(batch))


# ----------------------------------------------------------------------------- padding, batching, state


def test_padding_side_does_not_matter_for_gpt2(tok, texts):
    model = _lora(tiny_gpt2(), ["c_attn"], fan_in_fan_out=True)
    right = dict(tok(texts["text"], padding="max_length", max_length=16, return_tensors="pt"))
    tok_left = tiny_tokenizer()
    tok_left.padding_side = "left"
    left = dict(tok_left(texts["text"], padding=True, return_tensors="pt"))
    single = [dict(tok([t], return_tensors="pt")) for t in texts["text"]]
    sk = GradientSketcher(model, GradientConfig(params="lora", target="pseudo_label"), SketchConfig(dim=16))
    ref = torch.cat([sk.per_example_gradients(s) for s in single])
    torch.testing.assert_close(sk.per_example_gradients(right), ref, atol=1e-5, rtol=1e-4)
    # left padding shifts GPT-2's absolute positions, so compare the positions-free part: the labels mask
    left_sk = GradientSketcher(model, GradientConfig(params="lora", target="output"), SketchConfig(dim=16))
    single_pos = [dict(s, position_ids=torch.arange(s["input_ids"].shape[1])[None]) for s in single]
    pos = (left["attention_mask"].cumsum(1) - 1).clamp_min(0)
    ref_out = torch.cat([left_sk.per_example_gradients(s) for s in single_pos])
    got = left_sk.per_example_gradients(dict(left, position_ids=pos))
    torch.testing.assert_close(got, ref_out, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("target", ["random_label", "pseudo_label", "output"])
def test_batch_size_invariance_and_determinism(tok, texts, target):
    model = _lora(tiny_bert_classifier(), ["query", "value"], task_type="SEQ_CLS")
    batch, _ = _seq_cls_data(tok, texts, torch.tensor([0, 1, 2, 1, 0]))
    rows = torch.tensor([10, 11, 12, 13, 14])
    sk = GradientSketcher(
        model, GradientConfig(params="lora", target=target), SketchConfig(kind="kronecker", dim=16)
    )
    whole = sk(batch, row_indices=rows)
    parts = []
    for start in range(0, N, 2):
        sub = {k: v[start : start + 2] for k, v in batch.items()}
        sub_tok = tok(texts["text"][start : start + 2], padding=True, return_tensors="pt")  # its own padding
        sub.update(sub_tok)
        parts.append(sk(sub, row_indices=rows[start : start + 2]))
    torch.testing.assert_close(torch.cat(parts), whole, atol=1e-5, rtol=1e-4)
    # a fresh sketcher with the same seed reproduces it; another seed does not
    again = GradientSketcher(
        model, GradientConfig(params="lora", target=target), SketchConfig(kind="kronecker", dim=16)
    )(batch, row_indices=rows)
    torch.testing.assert_close(again, whole)
    other = GradientSketcher(
        model, GradientConfig(params="lora", target=target), SketchConfig(kind="kronecker", dim=16, seed=1)
    )(batch, row_indices=rows)
    assert not torch.allclose(other, whole)


def test_random_labels_keyed_on_row_index(tok, texts):
    model = tiny_bert_classifier()
    batch, _ = _seq_cls_data(tok, texts, torch.zeros(N, dtype=torch.long))
    sk = GradientSketcher(model, GradientConfig(target="random_label"), SketchConfig(dim=16))
    rows = torch.arange(100, 100 + N)
    out = sk(batch, row_indices=rows)
    perm = torch.tensor([3, 0, 4, 1, 2])
    shuffled = {k: v[perm] for k, v in batch.items()}
    torch.testing.assert_close(sk(shuffled, row_indices=rows[perm]), out[perm])
    # the labels drawn are those of a loss with explicit labels
    from hf_skmm.gradients.losses import random_labels

    drawn = random_labels("classification", rows, 0, 3)
    with_labels = GradientSketcher(model, GradientConfig(), SketchConfig(dim=16))(dict(batch, labels=drawn))
    torch.testing.assert_close(with_labels, out)


def test_output_target_is_projected_logit_gradient(tok, texts):
    model = tiny_bert_classifier()
    batch, examples = _seq_cls_data(tok, texts, torch.zeros(N, dtype=torch.long))
    u = output_projection(3, seed=7)
    ref = _reference(
        model, ["classifier.weight", "classifier.bias"], examples, lambda m, ex: m(**ex).logits[0] @ u
    )
    sk = GradientSketcher(model, GradientConfig(target="output"), SketchConfig(dim=8, seed=7))
    torch.testing.assert_close(sk.per_example_gradients(batch), ref, atol=1e-6, rtol=1e-4)
    # classification head on a pooled vector: the closed form (softmax - onehot) ⊗ h
    model.eval()
    pooled = model.bert(**{k: v for k, v in batch.items() if k != "labels"}).pooler_output.detach()
    probs = model.classifier(pooled).softmax(-1).detach()
    closed = (probs - F.one_hot(batch["labels"], 3)).unsqueeze(2) * pooled.unsqueeze(1)
    grads = GradientSketcher(model, GradientConfig(), SketchConfig(dim=8)).per_example_gradients(batch)
    torch.testing.assert_close(grads[:, : 3 * 16], closed.reshape(N, -1), atol=1e-5, rtol=1e-4)


def test_model_state_is_restored(tok, texts):
    model = _lora(tiny_bert_classifier(), ["query", "value"], task_type="SEQ_CLS")
    model.train()
    model.base_model.model.bert.encoder.layer[0].eval()  # mixed modes must survive too
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batch, _ = _seq_cls_data(tok, texts, torch.tensor([0, 1, 2, 1, 0]))
    for engine in ("structured", "generic"):
        for params in ("lora", "last_k", "head"):
            sk = GradientSketcher(
                model, GradientConfig(params=params, engine=engine if params == "lora" else "auto")
            )
            sk(batch)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_runs_under_no_grad_inference_mode_and_bf16_autocast(tok, texts):
    model = _lora(tiny_bert_classifier(), ["query", "value"], task_type="SEQ_CLS")
    batch, _ = _seq_cls_data(tok, texts, torch.tensor([0, 1, 2, 1, 0]))
    sk = GradientSketcher(model, GradientConfig(params="lora"), SketchConfig(kind="kronecker", dim=16))
    full = sk(batch)
    with torch.no_grad():
        torch.testing.assert_close(sk(batch), full)
    with torch.inference_mode():  # also with a batch made inside inference mode (inference tensors)
        torch.testing.assert_close(sk({k: v.clone() for k, v in batch.items()}), full)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = sk(batch)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    # bf16 has ~3 significant digits; the sketch must still point the same way
    cos = F.cosine_similarity(low, full, dim=1)
    assert (cos > 0.95).all(), cos


def test_identity_is_json_and_describes_the_layout():
    model = tiny_bert_classifier()
    sk = GradientSketcher(model, GradientConfig(), SketchConfig(kind="kronecker", dim=32, seed=3))
    ident = json.loads(json.dumps(sk.identity()))
    assert ident["engine"] == "structured" and ident["task"] == "classification"
    assert ident["num_params"] == 3 * 16 + 3 == sk.num_params and ident["out_dim"] == 32 == sk.out_dim
    assert [p["name"] for p in ident["params"]] == sk.param_names
    assert ident["sketch_config"]["seed"] == 3
    vmap_off = GradientSketcher(
        model, GradientConfig(vmap="off"), SketchConfig(kind="kronecker", dim=32, seed=3)
    )
    assert vmap_off.identity() == sk.identity()  # speed knobs do not change results or fingerprints


def test_generic_engine_vmaps_transformers_models_with_4d_masks(tok, texts):
    """The verified 4-D mask lets vmap trace BERT (bidirectional) and GPT-2 (causal); same numbers as the loop."""
    bert = _lora(tiny_bert_classifier(), ["query", "value"], task_type="SEQ_CLS")
    batch, _ = _seq_cls_data(tok, texts, torch.tensor([0, 1, 2, 1, 0]))
    gpt = _lora(tiny_gpt2(), ["c_attn"], fan_in_fan_out=True)
    lm_batch, _ = _lm_data(tok, texts)
    for model, data, layout in ((bert, batch, "bidirectional"), (gpt, lm_batch, "causal")):
        vm = GradientSketcher(model, GradientConfig(params="lora", engine="generic", vmap="on"))
        loop = GradientSketcher(model, GradientConfig(params="lora", engine="generic", vmap="off"))
        got = vm.per_example_gradients(data)
        assert vm._mask_layout == layout and vm._use_vmap
        torch.testing.assert_close(got, loop.per_example_gradients(data), atol=1e-6, rtol=1e-4)


def test_label_free_targets_on_gpt2_match_independent_references(tok, texts):
    model = _lora(tiny_gpt2(), ["c_attn"], fan_in_fan_out=True)
    batch, examples = _lm_data(tok, texts)
    names = select_parameter_names(model, GradientConfig(params="lora"))

    def own_argmax_loss(m, ex):  # transformers' LM loss against the model's own greedy next tokens
        logits = m(input_ids=ex["input_ids"]).logits
        labels = torch.cat([ex["input_ids"][:, :1], logits[:, :-1].argmax(-1)], dim=1)
        return m(input_ids=ex["input_ids"], labels=labels).loss

    ref = _reference(model, names, examples, own_argmax_loss)
    sk = GradientSketcher(model, GradientConfig(params="lora", target="pseudo_label"))
    torch.testing.assert_close(sk.per_example_gradients(batch), ref, atol=1e-5 * ref.abs().max(), rtol=1e-4)
    # random labels: padded batch == each example alone, given the same row numbers
    rows = torch.arange(40, 40 + N)
    rnd = GradientSketcher(model, GradientConfig(params="lora", target="random_label"), SketchConfig(dim=16))
    alone = torch.cat(
        [
            rnd(dict(tok([t], return_tensors="pt")), row_indices=rows[i : i + 1])
            for i, t in enumerate(texts["text"])
        ]
    )
    torch.testing.assert_close(rnd(batch, row_indices=rows), alone, atol=1e-5, rtol=1e-4)


def test_token_pseudo_label_skips_ignored_tokens_in_both_engines(tok, texts):
    model = tiny_bert_token_classifier()
    batch, examples = _token_data(tok, texts)

    def own_argmax_loss(m, ex):  # HF loss against the model's own argmax on the tokens not labelled -100
        logits = m(**{k: v for k, v in ex.items() if k != "labels"}).logits
        labels = torch.where(ex["labels"] == -100, -100, logits.argmax(-1))
        return m(**{k: v for k, v in ex.items() if k != "labels"}, labels=labels).loss

    _check_engines(
        model,
        {"params": "head", "target": "pseudo_label"},
        batch,
        examples,
        ["structured", "generic"],
        own_argmax_loss,
    )


def test_regression_output_target(tok, texts):
    model = tiny_bert_classifier(num_labels=1)
    batch, examples = _seq_cls_data(tok, texts, torch.zeros(N))
    ref = _reference(
        model, ["classifier.weight", "classifier.bias"], examples, lambda m, ex: m(**ex).logits[0, 0]
    )
    got = GradientSketcher(model, GradientConfig(target="output")).per_example_gradients(batch)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-4)


class _SharedLayer(torch.nn.Module):
    """The same nn.Linear applied twice (weight sharing across depth, as in ALBERT)."""

    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(4, 6)
        self.shared = torch.nn.Linear(6, 6)
        self.head = torch.nn.Linear(6, 3)

    def forward(self, features):
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(self.inp(features))))))


def test_layer_called_twice_sums_both_calls():
    torch.manual_seed(0)
    model = _SharedLayer()
    x, y = torch.randn(N, 4), torch.randint(0, 3, (N,))
    batch = {"features": x, "labels": y}
    examples = [{"features": x[i : i + 1], "labels": y[i : i + 1]} for i in range(N)]
    cfg = {"params": "names", "param_names": ["shared"]}
    _check_engines(
        model, cfg, batch, examples, ["structured", "generic"], _mlp_loss, sketch_kind="kronecker", m=8
    )

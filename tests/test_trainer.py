"""WeightedTrainer, WeightedDataCollator and LinearProbe: the weighted loss against a hand computation."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from hf_skmm.integrations.trainer import (
    LinearProbe,
    TrainConfig,
    WeightedDataCollator,
    normalize_weights,
    per_example_loss,
    train_and_evaluate,
    weighted_mean_loss,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hand_losses(model: LinearProbe, x: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """ℓ_i one example at a time, from the formulas (no reduction helpers)."""
    out = []
    for i in range(len(x)):
        z = x[i] @ model.classifier.weight.T + model.classifier.bias
        if task == "classification":
            out.append(torch.logsumexp(z, 0) - z[int(y[i])])
        else:
            out.append((z[0] - y[i]) ** 2)
    return torch.stack(out)


def _trainer(model, task, weighted, batch_size, lr=0.1, tmp_path=None):
    from transformers import TrainingArguments

    from hf_skmm.integrations.trainer import WeightedTrainer

    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        max_steps=1,
        optim="sgd",
        weight_decay=0.0,
        lr_scheduler_type="constant",
        remove_unused_columns=False,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    return WeightedTrainer(model=model, args=args, task=task, weighted=weighted)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_compute_loss_matches_hand_computation(task, tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=gen)
    y = (
        torch.randint(0, 3, (6,), generator=gen)
        if task == "classification"
        else torch.randn(6, generator=gen)
    )
    w = torch.rand(6, generator=gen) * 2
    model = LinearProbe(5, 3 if task == "classification" else 1, seed=1, init="random")
    hand = _hand_losses(model, x, y, task)
    batch = {"features": x, "labels": y, "skmm_weight": w}
    weighted = _trainer(model, task, True, 6, tmp_path=tmp_path).compute_loss(model, batch)
    plain = _trainer(model, task, False, 6, tmp_path=tmp_path).compute_loss(model, batch)
    torch.testing.assert_close(weighted, (w * hand).sum() / 6)
    torch.testing.assert_close(plain, hand.mean())
    # the unweighted loss is the model's own (transformers-style) mean loss
    torch.testing.assert_close(plain, model(features=x, labels=y).loss)
    torch.testing.assert_close(per_example_loss(model(features=x).logits, y, task), hand)


def test_weighted_training_step_matches_hand_gradient(tmp_path):
    """One full-batch SGD step through Trainer: θ₁ = θ₀ − lr ∇[(1/n) Σ w̃_i ℓ_i], w̃ = w / mean(w)."""
    gen = torch.Generator().manual_seed(3)
    n, d = 8, 4
    x = torch.randn(n, d, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    raw = torch.rand(n, generator=gen) + 0.1
    w_tilde = torch.tensor(normalize_weights(raw.numpy()), dtype=torch.float32)
    ds = datasets.Dataset.from_dict(
        {"features": x.tolist(), "label": y.tolist(), "text": ["t"] * n, "skmm_weight": w_tilde.tolist()}
    )
    model = LinearProbe(d, 2, seed=0, init="random")
    reference = LinearProbe(d, 2, seed=0, init="random")
    loss = (w_tilde * _hand_losses(reference, x, y, "classification")).mean()
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    expected = [p.detach() - 0.1 * g for p, g in zip(reference.parameters(), grads)]

    trainer = _trainer(model, "classification", True, n, tmp_path=tmp_path)
    trainer.train_dataset = ds
    trainer.data_collator = WeightedDataCollator(None, columns=["features", "label"])
    trainer.train()
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    # and the weights matter: unweighted training lands elsewhere
    unweighted = LinearProbe(d, 2, seed=0, init="random")
    t2 = _trainer(unweighted, "classification", False, n, tmp_path=tmp_path)
    t2.train_dataset, t2.data_collator = ds, WeightedDataCollator(None, columns=["features", "label"])
    t2.train()
    assert not torch.allclose(unweighted.classifier.weight, model.classifier.weight)


def test_collator_keeps_weights_and_drops_other_columns():
    collate = WeightedDataCollator(None, columns=["features", "label"])
    batch = collate(
        [
            {"features": [1.0, 2.0], "label": 1, "text": "a", "skmm_weight": 0.5},
            {"features": [3.0, 4.0], "label": 0, "text": "b", "skmm_weight": 1.5},
        ]
    )
    assert set(batch) == {"features", "labels", "skmm_weight"}
    assert batch["skmm_weight"].tolist() == [0.5, 1.5]
    assert batch["labels"].tolist() == [1, 0]


def test_weighted_mean_loss_and_normalisation():
    losses = torch.tensor([1.0, 2.0, 3.0])
    assert weighted_mean_loss(losses, None).item() == pytest.approx(2.0)
    assert weighted_mean_loss(losses, torch.tensor([0.0, 0.0, 3.0])).item() == pytest.approx(3.0)
    np.testing.assert_allclose(normalize_weights([1.0, 3.0]), [0.5, 1.5])
    for bad in ([], [1.0, -1.0], [0.0, 0.0], [np.nan, 1.0]):
        with pytest.raises(ValueError, match="weights"):
            normalize_weights(bad)


def test_train_and_evaluate_linear_probe_learns(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 6)).astype("float32")
    y = (x @ rng.normal(size=6)).astype("float32")
    ds = datasets.Dataset.from_dict({"features": x.tolist(), "label": y.tolist(), "skmm_weight": [1.0] * 160})
    scores = train_and_evaluate(
        LinearProbe(6, 1),
        ds.select(range(120)),
        ds.select(range(120, 160)),
        "regression",
        ["features"],
        TrainConfig(min_steps=150, learning_rate=0.05, weighted=True),
        str(tmp_path),
    )
    assert scores["pearson"] > 0.95
    assert scores["mse"] < 0.2 * float(np.var(y[120:]))
    assert scores["train_examples"] == 120 and scores["train_steps"] == 150


def test_train_and_evaluate_bad_inputs(tmp_path):
    ds = datasets.Dataset.from_dict({"features": [[0.0, 1.0]] * 4, "label": [0, 1, 0, 1]})
    with pytest.raises(ValueError, match="skmm_weight"):
        train_and_evaluate(
            LinearProbe(2, 2),
            ds,
            ds,
            "classification",
            ["features"],
            TrainConfig(weighted=True),
            str(tmp_path),
        )
    with pytest.raises(ValueError, match="task"):
        train_and_evaluate(LinearProbe(2, 2), ds, ds, "ranking", ["features"], TrainConfig(), str(tmp_path))
    with pytest.raises(ValueError, match="lacks column"):
        train_and_evaluate(
            LinearProbe(2, 2), ds, ds, "classification", ["pixels"], TrainConfig(), str(tmp_path)
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": 0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"min_steps": -1}, "min_steps"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_train_config_steps():
    cfg = TrainConfig(batch_size=32, num_epochs=10, min_steps=100)
    assert cfg.num_steps(20) == 100
    assert cfg.num_steps(1000) == 320
    assert TrainConfig(max_steps=50).num_steps(10_000) == 50

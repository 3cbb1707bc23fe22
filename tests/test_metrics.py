"""Local evaluate metric modules vs numpy / scipy references on random inputs (offline)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hf_skmm.metrics import compute_metrics_for, load_metric, metric_path, predictions_from_logits


def _macro_f1_reference(pred: np.ndarray, ref: np.ndarray) -> float:
    # confusion-matrix formulation, independent of the module's loop
    classes = np.union1d(pred, ref)
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)))
    for p, r in zip(pred, ref):
        cm[index[r], index[p]] += 1
    tp = np.diag(cm)
    precision = np.divide(tp, cm.sum(0), out=np.zeros_like(tp), where=cm.sum(0) > 0)
    recall = np.divide(tp, cm.sum(1), out=np.zeros_like(tp), where=cm.sum(1) > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0
    )
    return float(f1.mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_matches_reference(seed):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 4, size=200)
    pred = np.where(rng.random(200) < 0.6, ref, rng.integers(0, 4, size=200))
    out = load_metric("classification").compute(predictions=pred.tolist(), references=ref.tolist())
    assert out["accuracy"] == pytest.approx(np.mean(pred == ref))
    assert out["macro_f1"] == pytest.approx(_macro_f1_reference(pred, ref))


def test_classification_known_values():
    out = load_metric("classification").compute(predictions=[0, 0, 1, 1], references=[0, 1, 1, 1])
    # class 0: tp 1 fp 1 fn 0 -> 2/3 ; class 1: tp 2 fp 0 fn 1 -> 4/5
    assert out == pytest.approx({"accuracy": 0.75, "macro_f1": (2 / 3 + 4 / 5) / 2})


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_matches_reference(seed):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=300)
    pred = 0.7 * ref + rng.normal(scale=0.5, size=300)
    out = load_metric("regression").compute(predictions=pred.tolist(), references=ref.tolist())
    assert out["mse"] == pytest.approx(np.mean((pred - ref) ** 2))
    assert out["mae"] == pytest.approx(np.mean(np.abs(pred - ref)))
    assert out["pearson"] == pytest.approx(stats.pearsonr(pred, ref)[0])


def test_regression_constant_prediction_has_zero_pearson():
    out = load_metric("regression").compute(predictions=[1.0, 1.0, 1.0], references=[0.0, 1.0, 2.0])
    assert out["pearson"] == 0.0
    assert out["mse"] == pytest.approx(2 / 3)


def test_metric_modules_ship_inside_the_package():
    for name in ("classification", "regression"):
        assert (metric_path(name) / f"{name}.py").is_file()


def test_unknown_metric_name_is_an_error():
    with pytest.raises(ValueError, match="accuracy"):
        metric_path("accuracy")


def test_compute_metrics_for_trainer_eval_pred():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0]])
    labels = np.array([0, 1, 1])
    out = compute_metrics_for("classification")((logits, labels))
    assert out["accuracy"] == pytest.approx(2 / 3)
    reg = compute_metrics_for("regression")((np.array([[1.0], [2.0]]), np.array([1.0, 3.0])))
    assert reg["mse"] == pytest.approx(0.5)
    assert predictions_from_logits((np.array([[1.0], [2.0]]),), "regression").tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="task"):
        predictions_from_logits(logits, "ranking")

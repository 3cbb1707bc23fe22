"""Regression metrics for hf_skmm recipes: MSE, MAE and Pearson's r (a local ``evaluate`` module).

Loaded offline with ``evaluate.load(<path of this folder>)`` (see :func:`hf_skmm.metrics.load_metric`);
depends only on numpy.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
mse = mean((prediction - reference)^2); mae = mean(|prediction - reference|);
pearson = cov(prediction, reference) / (std(prediction) std(reference)) (0.0 when either is constant).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): predicted values.
    references (`list` of `float`): ground-truth values.
Returns:
    mse (`float`), mae (`float`), pearson (`float`, in [-1, 1]).
Examples:
    >>> metric = evaluate.load("path/to/hf_skmm/metrics/regression")
    >>> metric.compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 2.0, 4.0])
    {'mse': 0.3333333333333333, 'mae': 0.3333333333333333, 'pearson': 0.9819805060619659}
"""

_CITATION = ""


def pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    p = predictions - predictions.mean()
    r = references - references.mean()
    denom = np.sqrt(np.sum(p * p) * np.sum(r * r))
    return float(np.sum(p * r) / denom) if denom > 0 else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Regression(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
        references = np.asarray(references, dtype=np.float64).reshape(-1)
        diff = predictions - references
        return {
            "mse": float(np.mean(diff * diff)),
            "mae": float(np.mean(np.abs(diff))),
            "pearson": pearson(predictions, references),
        }

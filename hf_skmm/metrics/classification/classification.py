"""Classification metrics for hf_skmm recipes: accuracy and macro-averaged F1 (a local ``evaluate`` module).

Loaded offline with ``evaluate.load(<path of this folder>)`` (see :func:`hf_skmm.metrics.load_metric`);
depends only on numpy so it runs without scikit-learn or the Hub.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
accuracy = mean(prediction == reference).
macro_f1 = unweighted mean over the classes c present in references or predictions of
F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) (a class with TP = FP = FN = 0 cannot occur in that set).
Same definitions as sklearn.metrics.accuracy_score and f1_score(average="macro").
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): ground-truth labels.
Returns:
    accuracy (`float`): fraction of correct predictions, in [0, 1].
    macro_f1 (`float`): macro-averaged F1, in [0, 1].
Examples:
    >>> metric = evaluate.load("path/to/hf_skmm/metrics/classification")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666, 'macro_f1': 0.6666666666666666}
"""

_CITATION = ""


def macro_f1(predictions: np.ndarray, references: np.ndarray) -> float:
    classes = np.union1d(predictions, references)
    scores = []
    for c in classes:
        tp = np.sum((predictions == c) & (references == c))
        fp = np.sum((predictions == c) & (references != c))
        fn = np.sum((predictions != c) & (references == c))
        scores.append(2.0 * tp / (2.0 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        return {
            "accuracy": float(np.mean(predictions == references)),
            "macro_f1": macro_f1(predictions, references),
        }

"""Local ``evaluate`` metric modules shipped with hf_skmm (the Hub is not needed to score a recipe).

Each metric lives in ``hf_skmm/metrics/<name>/<name>.py`` and loads with ``evaluate.load(<folder>)``:

* ``classification``: ``accuracy``, ``macro_f1``;
* ``regression``: ``mse``, ``mae``, ``pearson``.

:func:`compute_metrics_for` returns a ``compute_metrics`` callable for ``transformers.Trainer``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("classification", "regression")
_DIR = Path(__file__).resolve().parent


def metric_path(name: str) -> Path:
    """Folder of the local metric module ``name`` (pass it to ``evaluate.load``)."""
    if name not in METRICS:
        raise ValueError(f"metric name={name!r} is unknown; use one of {list(METRICS)}.")
    return _DIR / name


def load_metric(name: str, **kwargs: Any):
    """``evaluate.load`` of a local hf_skmm metric module (works with ``HF_HUB_OFFLINE=1``)."""
    import evaluate

    return evaluate.load(str(metric_path(name)), **kwargs)


def predictions_from_logits(logits: Any, task: str) -> np.ndarray:
    """Class ids (argmax) for classification, the squeezed outputs for regression."""
    logits = np.asarray(logits[0] if isinstance(logits, tuple) else logits)
    if task == "classification":
        return logits.argmax(axis=-1)
    if task == "regression":
        return logits.reshape(len(logits), -1)[:, 0]
    raise ValueError(f"task={task!r} is unknown; use 'classification' or 'regression'.")


def compute_metrics_for(task: str) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics(eval_pred)`` for ``transformers.Trainer`` backed by the local module of ``task``."""
    metric = load_metric(task)

    def compute_metrics(eval_pred: Any) -> dict[str, float]:
        logits, labels = eval_pred[0], eval_pred[1]
        predictions = predictions_from_logits(logits, task)
        references = np.asarray(labels).reshape(-1)
        return metric.compute(predictions=predictions, references=references)

    return compute_metrics

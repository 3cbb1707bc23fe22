"""Training on a coreset with ``transformers.Trainer``: per-example weights, a linear probe, evaluation.

Three pieces, each usable on its own:

* :class:`LinearProbe`, a head-only model ``features -> classifier``. In linear probing the encoder is
  frozen, so its pooled output is a fixed function of the input: computing it once
  (:func:`hf_skmm.integrations.recipe.encode_features`) and training ``classifier`` on the cached
  features is the same optimisation problem as training the head of the full model, at a fraction
  of the cost (the parameter names match ``BertForSequenceClassification.classifier``).
* :class:`WeightedTrainer`, a ``Trainer`` whose loss is computed per example, optionally weighted by
  the coreset's ``skmm_weight`` column, and :class:`WeightedDataCollator`, which carries that column
  through the collator (``Trainer`` would otherwise drop it as an unused column).
* :func:`train_and_evaluate`, the recipe's training step: fit on a (coreset) dataset, predict on the
  test split, score with the local ``evaluate`` modules of :mod:`hf_skmm.metrics`.

Weighted loss (``--weighted``). With coreset weights ``w_i`` (``skmm_weight``) normalised to mean 1 over
the coreset, ``w̃_i = w_i / mean_S(w)``, the loss of a batch ``B`` is

    L_B = (1 / |B|) Σ_{i ∈ B} w̃_i ℓ_i,

an unbiased mini-batch estimate of the weighted coreset risk ``(1/n) Σ_{i ∈ S} w̃_i ℓ_i``. Unweighted
training is the special case ``w̃ ≡ 1``. ``ℓ_i`` is the cross-entropy (classification) or the squared
error ``(f(x_i) - y_i)²`` (regression, as ``MSELoss`` in transformers).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

WEIGHT_COLUMN = "skmm_weight"
TASKS = ("classification", "regression")


# --------------------------------------------------------------------------- model


class LinearProbe(nn.Module):
    """A linear head on precomputed (frozen-encoder) features: ``logits = classifier(features)``.

    ``forward(features, labels=None)`` returns a ``SequenceClassifierOutput`` like a transformers model
    (with the mean loss when labels are given), so the same Trainer, metrics and gradient extraction work.

    Args:
        in_dim: feature dimension (the encoder's hidden size, 384 for MiniLM).
        num_labels: number of classes, or 1 for regression.
        seed: seed of the head's initialisation (``init="random"``).
        init: ``"zeros"`` (default: θ = 0, the paper's finetuning initialisation, so gradient extraction
            at initialisation sees ``f = 0``) or ``"random"`` (``nn.Linear``'s default uniform init).
        name_or_path: what the features come from (e.g. ``"<encoder path> (frozen, mean pooling) + linear
            probe"``); recorded like a transformers model's ``name_or_path`` in provenance and dataset cards.
    """

    def __init__(
        self, in_dim: int, num_labels: int, seed: int = 0, init: str = "zeros", name_or_path: str = ""
    ):
        super().__init__()
        self.name_or_path = name_or_path
        if in_dim < 1 or num_labels < 1:
            raise ValueError(f"LinearProbe: in_dim={in_dim} and num_labels={num_labels} must both be >= 1.")
        self.in_dim = int(in_dim)
        self.num_labels = int(num_labels)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.classifier = nn.Linear(in_dim, num_labels)
        torch.random.set_rng_state(generator_state)
        if init == "zeros":
            nn.init.zeros_(self.classifier.weight)
            nn.init.zeros_(self.classifier.bias)
        elif init != "random":
            raise ValueError(f"LinearProbe: init={init!r} is unknown; use 'zeros' or 'random'.")

    @property
    def task(self) -> str:
        return "regression" if self.num_labels == 1 else "classification"

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        logits = self.classifier(features.to(self.classifier.weight.dtype))
        loss = None
        if labels is not None:
            loss = per_example_loss(logits, labels, self.task).mean()
        return SequenceClassifierOutput(loss=loss, logits=logits)


# --------------------------------------------------------------------------- loss


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """``ℓ_i`` for each example of a batch: cross-entropy, or squared error for regression ``[b]``."""
    if task == "classification":
        return nn.functional.cross_entropy(logits.float(), labels.long().view(-1), reduction="none")
    if task == "regression":
        prediction = logits.float().reshape(len(logits), -1)[:, 0]
        return (prediction - labels.float().view(-1)) ** 2
    raise ValueError(f"task={task!r} is unknown; use one of {list(TASKS)}.")


def weighted_mean_loss(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``(1/|B|) Σ_i w̃_i ℓ_i`` (plain mean when ``weights`` is None); see the module docstring."""
    if weights is None:
        return losses.mean()
    return (weights.to(losses) * losses).mean()


def normalize_weights(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scale coreset weights to mean 1 (``w̃_i = w_i / mean(w)``); refuses negative or all-zero weights."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0:
        raise ValueError("weights is empty; a coreset needs at least one example.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(
            f"weights must be finite, >= 0 and not all 0 (got min={w.min()!r}, sum={w.sum()!r}); "
            "check the skmm_weight column of the coreset."
        )
    return w / w.mean()


class WeightedDataCollator:
    """Wrap a collator: keep only ``columns`` (+ the weight column), collate, add ``skmm_weight`` as a tensor.

    Use with ``TrainingArguments(remove_unused_columns=False)``: the Trainer's column pruning would
    otherwise drop ``skmm_weight``, which is not an argument of the model's ``forward``.

    Args:
        base: the underlying collator (e.g. ``DataCollatorWithPadding`` or ``default_data_collator``).
        columns: the model inputs and ``labels`` to keep; other fields (text, ids) are dropped.
        weight_column: name of the weight column (kept out of the model's inputs).
    """

    def __init__(self, base: Callable | None, columns: Sequence[str], weight_column: str = WEIGHT_COLUMN):
        from transformers import default_data_collator

        self.base = base or default_data_collator
        self.columns = list(columns)
        self.weight_column = weight_column

    def __call__(self, features: list[Mapping[str, Any]]) -> dict[str, Any]:
        weights = [f[self.weight_column] for f in features] if self.weight_column in features[0] else None
        batch = self.base([{k: f[k] for k in self.columns if k in f} for f in features])
        batch = dict(batch)
        if "label" in batch and "labels" not in batch:
            batch["labels"] = batch.pop("label")
        if weights is not None:
            batch[self.weight_column] = torch.tensor(weights, dtype=torch.float32)
        return batch


def _trainer_class():
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        """``Trainer`` with a per-example loss, weighted by ``skmm_weight`` when ``weighted=True``.

        The batch must come from :class:`WeightedDataCollator` (it carries ``skmm_weight``). The weights
        must already be normalised to mean 1 over the coreset (:func:`normalize_weights`); the batch loss
        is ``(1/|B|) Σ w̃_i ℓ_i``. With ``weighted=False`` the column is ignored (plain mean loss).
        """

        def __init__(self, *args: Any, task: str, weighted: bool = False, **kwargs: Any):
            if task not in TASKS:
                raise ValueError(f"WeightedTrainer: task={task!r} is unknown; use one of {list(TASKS)}.")
            super().__init__(*args, **kwargs)
            self.task = task
            self.weighted = bool(weighted)
            # our loss is a per-batch mean, never normalised by num_items_in_batch: let Trainer divide
            # by the gradient-accumulation steps itself
            self.model_accepts_loss_kwargs = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            weights = inputs.pop(WEIGHT_COLUMN, None)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
            losses = per_example_loss(logits, labels, self.task)
            # evaluation batches carry no weights: the test loss is always the plain mean
            if self.weighted and weights is None and model.training:
                raise ValueError(
                    "WeightedTrainer(weighted=True) got a batch without 'skmm_weight'; train on a coreset "
                    "(select_coreset adds the column) with WeightedDataCollator, or set weighted=False."
                )
            loss = weighted_mean_loss(losses, weights if self.weighted and model.training else None)
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer


def __getattr__(name: str) -> Any:
    # WeightedTrainer subclasses transformers.Trainer: build it lazily so importing this module stays cheap
    if name == "WeightedTrainer":
        cls = _trainer_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- config + training step


@dataclass
class TrainConfig:
    """How the recipe finetunes on a coreset (HfArgumentParser-compatible)."""

    learning_rate: float = field(default=1e-2, metadata={"help": "Peak learning rate (AdamW, linear decay)."})
    batch_size: int = field(default=32, metadata={"help": "Per-device train batch size."})
    num_epochs: float = field(default=10.0, metadata={"help": "Epochs over the coreset."})
    min_steps: int = field(
        default=200,
        metadata={"help": "At least this many optimiser steps, so tiny coresets are trained to convergence."},
    )
    max_steps: int = field(default=0, metadata={"help": "If > 0, a hard cap on optimiser steps."})
    weight_decay: float = field(
        default=0.0, metadata={"help": "AdamW weight decay (ridge-like regularisation)."}
    )
    warmup_ratio: float = field(default=0.0, metadata={"help": "Share of steps with linear warm-up."})
    weighted: bool = field(
        default=False,
        metadata={"help": "Weight each example's loss by its skmm_weight (normalised to mean 1)."},
    )
    eval_batch_size: int = field(
        default=256, metadata={"help": "Batch size for predictions on the test split."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the head initialisation and the data order."})

    def __post_init__(self) -> None:
        for name in ("learning_rate", "num_epochs"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"TrainConfig.{name}: got {value!r}; expected a positive number.")
        for name in ("batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name}: got {value!r}; expected an int >= 1.")
        for name in ("min_steps", "max_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name}: got {value!r}; expected an int >= 0.")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay: got {self.weight_decay!r}; expected >= 0.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(
                f"TrainConfig.warmup_ratio: got {self.warmup_ratio!r}; expected a value in [0, 1)."
            )

    def num_steps(self, num_examples: int) -> int:
        """``max(min_steps, ceil(n / batch_size) * num_epochs)``, capped by ``max_steps`` when set."""
        steps = max(self.min_steps, math.ceil(math.ceil(num_examples / self.batch_size) * self.num_epochs))
        return min(steps, self.max_steps) if self.max_steps > 0 else steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_and_evaluate(
    model: nn.Module,
    train_dataset: Any,
    eval_dataset: Any,
    task: str,
    input_columns: Sequence[str],
    config: TrainConfig,
    output_dir: str,
    base_collator: Callable | None = None,
    disable_tqdm: bool = True,
) -> dict[str, float]:
    """Finetune ``model`` on ``train_dataset`` with :class:`WeightedTrainer`, score it on ``eval_dataset``.

    Args:
        model: a :class:`LinearProbe`, a transformers model, or a peft model (its trainable parameters train).
        train_dataset: the coreset (or full / uniform subset); must hold ``skmm_weight`` if ``config.weighted``.
        eval_dataset: the held-out split.
        task: ``"classification"`` or ``"regression"`` (loss and metrics).
        input_columns: model inputs to feed besides ``labels`` (``["features"]`` or ``["input_ids", ...]``).
        config: optimisation settings (:class:`TrainConfig`).
        output_dir: the Trainer's output directory (nothing is saved there unless you call ``save_model``).
        base_collator: collator for the kept columns (default ``default_data_collator``; pass
            ``DataCollatorWithPadding`` for tokenised text).
        disable_tqdm: hide the Trainer's progress bars (sweeps run many short trainings).

    Returns:
        The local metric module's scores on ``eval_dataset`` (``accuracy``/``macro_f1`` or
        ``mse``/``mae``/``pearson``), plus ``train_loss``, ``train_steps`` and ``train_examples``.
    """
    from transformers import TrainingArguments

    from hf_skmm.metrics import load_metric, predictions_from_logits

    if task not in TASKS:
        raise ValueError(f"task={task!r} is unknown; use one of {list(TASKS)}.")
    if len(train_dataset) == 0:
        raise ValueError("train_dataset is empty; select at least one example.")
    if config.weighted:
        if WEIGHT_COLUMN not in train_dataset.column_names:
            raise ValueError(
                f"TrainConfig.weighted=True but train_dataset has no {WEIGHT_COLUMN!r} column "
                f"(columns: {train_dataset.column_names}); train on a coreset from select_coreset or unset weighted."
            )
        normalized = normalize_weights(train_dataset[WEIGHT_COLUMN])
        train_dataset = train_dataset.remove_columns(WEIGHT_COLUMN).add_column(
            WEIGHT_COLUMN, normalized.tolist()
        )
    keep = [*input_columns, "labels" if "labels" in train_dataset.column_names else "label"]
    missing = [c for c in keep if c not in train_dataset.column_names]
    if missing:
        raise ValueError(f"train_dataset lacks column(s) {missing}; it has {train_dataset.column_names}.")
    steps = config.num_steps(len(train_dataset))
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=int(config.warmup_ratio * steps),
        max_steps=steps,
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=disable_tqdm,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    collator = WeightedDataCollator(base_collator, columns=keep)
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=collator,
        task=task,
        weighted=config.weighted,
    )
    if disable_tqdm:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # sweeps run many short trainings: no per-run log lines
    train_output = trainer.train()
    eval_keep = [c for c in keep if c in eval_dataset.column_names]
    trainer.data_collator = WeightedDataCollator(base_collator, columns=eval_keep)
    prediction = trainer.predict(eval_dataset)
    scores = load_metric(task).compute(
        predictions=predictions_from_logits(prediction.predictions, task),
        references=np.asarray(prediction.label_ids).reshape(-1),
    )
    scores.update(
        train_loss=float(train_output.training_loss),
        train_steps=int(train_output.global_step),
        train_examples=len(train_dataset),
    )
    return scores

"""The finetuning recipe: extract → select → export → train → evaluate, coreset vs uniform.

``run_recipe`` is what ``hf-skmm run`` executes. On the VADER lexicon (:mod:`hf_skmm.integrations.data`)
with all-MiniLM-L6-v2 it:

1. **extract**: sketches the per-example gradients of the trainable parameters with
   :func:`~hf_skmm.integrations.extract.extract_sketches` (head gradients in linear probing, LoRA
   gradients in LoRA mode);
2. **select**: cuts a coreset of ``n`` rows for each method with
   :func:`~hf_skmm.integrations.coreset.select_coreset` (SkMM and baselines);
3. **export**: saves each coreset (``save_to_disk`` + ``selection/`` + dataset card);
4. **train**: finetunes a fresh model on each coreset with :class:`~hf_skmm.integrations.trainer.WeightedTrainer`;
5. **evaluate**: scores it on the held-out test split with the local ``evaluate`` modules.

Two finetuning modes, as in the paper (Dong et al., 2024, §5):

* ``linear_probe``: frozen encoder, trainable linear head. Because the encoder is frozen, its pooled
  output is computed once for every row (:func:`encode_features`, cached on disk) and the head is a
  :class:`~hf_skmm.integrations.trainer.LinearProbe` on those features: the same optimisation problem
  as training the head inside the full model, and the head's per-example gradients are exactly the
  paper's linear-probing features ``G`` (``∇_θ f(x) = [h(x), 1]`` for a regression output).
* ``lora``: a peft LoRA adapter on the attention projections plus a trainable head, trained on the
  tokenised text; gradients of the LoRA parameters are sketched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_skmm.integrations.trainer import LinearProbe, TrainConfig, train_and_evaluate

logger = logging.getLogger(__name__)

MODES = ("linear_probe", "lora")
POOLINGS = ("mean", "pooler")
DEFAULT_OUTPUT_DIR = "hf_skmm_outputs"
REPORT_DIR = "report"  # results.json + summary.md, written atomically
CORESETS_DIR = "coresets"
#: methods that need class probabilities (``probs=``) from a model
PROBABILITY_METHODS = ("margin", "entropy", "least_confidence")


# --------------------------------------------------------------------------- features


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pool_hidden_states(outputs: Any, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Sentence embedding from an encoder's outputs.

    ``"mean"``: the attention-masked mean of the last hidden states (sentence-transformers' pooling for
    all-MiniLM-L6-v2); ``"pooler"``: the ``pooler_output`` (``tanh(W h_[CLS] + b)``), which is exactly
    what ``BertForSequenceClassification`` feeds its ``classifier``.
    """
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(outputs.last_hidden_state.dtype)
        return (outputs.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    if pooling == "pooler":
        if getattr(outputs, "pooler_output", None) is None:
            raise ValueError(
                "pooling='pooler' needs an encoder with a pooler (e.g. BertModel); use pooling='mean'."
            )
        return outputs.pooler_output
    raise ValueError(f"pooling={pooling!r} is unknown; use one of {list(POOLINGS)}.")


def encode_features(
    dataset: Any,
    encoder: torch.nn.Module,
    tokenizer: Any,
    model_id: str,
    pooling: str = "mean",
    max_length: int = 16,
    batch_size: int = 256,
    text_column: str = "text",
    cache_dir: str | os.PathLike | None = None,
    desc: str = "Encoding features",
):
    """Add a ``features`` column: the frozen encoder's pooled embedding of ``text_column``.

    Runs once per (dataset fingerprint, ``model_id``, pooling, max_length): ``Dataset.map`` writes the
    result to ``cache_dir/features-<key>.arrow`` and later calls reuse it (``new_fingerprint`` is set
    explicitly so datasets never hashes the model through the closure).

    Args:
        dataset: a ``datasets.Dataset`` with a text column.
        encoder: the frozen encoder (e.g. ``AutoModel.from_pretrained(...)`` or ``model.bert``).
        tokenizer: its tokenizer.
        model_id: a string that identifies the encoder's weights (path + revision); part of the cache key.
        pooling: ``"mean"`` or ``"pooler"`` (see :func:`pool_hidden_states`).
        max_length: truncation length (VADER entries have at most 9 tokens).
        batch_size: rows per forward pass.
        text_column: the text column.
        cache_dir: folder of the feature cache; ``None`` keeps the result in memory.
        desc: progress-bar label.

    Returns:
        ``dataset`` with an extra ``features`` column (float32, length = hidden size).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is unknown; use one of {list(POOLINGS)}.")
    if text_column not in dataset.column_names:
        raise ValueError(
            f"text_column={text_column!r} is not a column of dataset; columns: {dataset.column_names}."
        )
    key = _hash(
        {
            "source": dataset._fingerprint,
            "model": model_id,
            "pooling": pooling,
            "max_length": max_length,
            "v": 1,
        }
    )
    device = next(encoder.parameters()).device
    encoder.eval()

    def encode(batch: dict[str, list]) -> dict[str, list]:
        tokens = tokenizer(
            [str(t) for t in batch[text_column]],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        with torch.no_grad():
            outputs = encoder(**tokens)
        pooled = pool_hidden_states(outputs, tokens["attention_mask"], pooling)
        return {"features": pooled.float().cpu().numpy()}

    cache_file = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache_file = str(Path(cache_dir) / f"features-{key}.arrow")
    return dataset.map(
        encode,
        batched=True,
        batch_size=batch_size,
        new_fingerprint=key,
        cache_file_name=cache_file,
        load_from_cache_file=cache_file is not None,
        desc=desc,
    )


# --------------------------------------------------------------------------- config


@dataclass
class RecipeConfig:
    """What ``hf-skmm run`` does (the VADER + MiniLM recipe); every field parses with HfArgumentParser."""

    task: str = field(
        default="regression",
        metadata={
            "help": "VADER view: 'regression' (mean human valence) or 'classification' (valence sign).",
            "choices": ["regression", "classification"],
        },
    )
    mode: str = field(
        default="linear_probe",
        metadata={
            "help": "'linear_probe' (frozen encoder, linear head) or 'lora' (peft LoRA + head).",
            "choices": list(MODES),
        },
    )
    n: int = field(default=50, metadata={"help": "Coreset size (examples selected from the training pool)."})
    methods: list[str] = field(
        default_factory=lambda: ["skmm", "uniform"],
        metadata={"help": "Selection methods to compare (see `hf-skmm methods`); the first is the headline."},
    )
    baseline: str = field(
        default="uniform", metadata={"help": "Method the summary compares the first one against."}
    )
    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2],
        metadata={
            "help": "One run per seed (sketch, selection, head init and data order); reported as mean ± std."
        },
    )
    compare_weighted: bool = field(
        default=False,
        metadata={
            "help": "Train every non-uniform coreset twice: unweighted and with its skmm_weight as loss "
            "weights (TrainConfig --weighted trains only the weighted variant)."
        },
    )
    pool_size: int = field(
        default=0,
        metadata={"help": "If > 0, subsample the training pool to this many rows (fast smoke runs)."},
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the fixed train/test split of the data."})
    test_size: float = field(default=0.2, metadata={"help": "Held-out share of the data."})
    model_path: str | None = field(
        default=None,
        metadata={
            "help": "A save_pretrained encoder folder (default: all-MiniLM-L6-v2 from hf-skmm[examples])."
        },
    )
    pooling: str = field(
        default="mean",
        metadata={
            "help": "Linear-probe features: 'mean' (masked mean of tokens) or 'pooler' (BERT pooler).",
            "choices": list(POOLINGS),
        },
    )
    max_length: int = field(default=16, metadata={"help": "Tokenizer truncation length."})
    gradient_target: str = field(
        default="auto",
        metadata={
            "help": "GradientConfig.target: 'output', 'loss', 'pseudo_label', 'random_label', or 'auto' "
            "('output' for regression: the paper's G = ∇θ f; 'loss' for classification)."
        },
    )
    sketch_kind: str = field(default="gaussian", metadata={"help": "SketchConfig.kind (JL family)."})
    sketch_dim: int = field(default=32, metadata={"help": "Sketch dimension m."})
    c_s: float | None = field(default=None, metadata={"help": "SkMM c_S (default: the selector's own)."})
    stratify: bool = field(
        default=False,
        metadata={"help": "Classification: select within each class in proportion to its size."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (mode=lora)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (mode=lora)."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["query", "value"], metadata={"help": "Modules LoRA adapts (mode=lora)."}
    )
    extract_batch_size: int = field(
        default=64, metadata={"help": "Rows per gradient batch during extraction."}
    )
    output_dir: str = field(
        default=f"{DEFAULT_OUTPUT_DIR}/run", metadata={"help": "Where coresets, metrics and the summary go."}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": f"Feature and sketch cache (default: {DEFAULT_OUTPUT_DIR}/cache)."},
    )
    save_coresets: bool = field(
        default=True, metadata={"help": "Export every coreset (save_to_disk + card)."}
    )

    def __post_init__(self) -> None:
        if self.task not in ("regression", "classification"):
            raise ValueError(f"RecipeConfig.task: got {self.task!r}; use 'regression' or 'classification'.")
        if self.mode not in MODES:
            raise ValueError(f"RecipeConfig.mode: got {self.mode!r}; use one of {list(MODES)}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"RecipeConfig.pooling: got {self.pooling!r}; use one of {list(POOLINGS)}.")
        for name in ("n", "sketch_dim", "max_length", "lora_r", "lora_alpha", "extract_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RecipeConfig.{name}: got {value!r}; expected an int >= 1.")
        if isinstance(self.pool_size, bool) or not isinstance(self.pool_size, int) or self.pool_size < 0:
            raise ValueError(
                f"RecipeConfig.pool_size: got {self.pool_size!r}; expected an int >= 0 (0 = all rows)."
            )
        if self.pool_size and self.pool_size < self.n:
            raise ValueError(
                f"RecipeConfig.pool_size={self.pool_size} is smaller than n={self.n}; raise it or lower n."
            )
        if isinstance(self.methods, str):
            self.methods = [self.methods]
        self.methods = list(self.methods)
        if not self.methods:
            raise ValueError(
                "RecipeConfig.methods: got []; pass at least one method, e.g. ['skmm', 'uniform']."
            )
        if isinstance(self.seeds, int):
            self.seeds = [self.seeds]
        self.seeds = [int(s) for s in self.seeds]
        if not self.seeds or min(self.seeds) < 0:
            raise ValueError(f"RecipeConfig.seeds: got {self.seeds!r}; pass one or more non-negative ints.")
        if not 0.0 < self.test_size < 1.0:
            raise ValueError(
                f"RecipeConfig.test_size: got {self.test_size!r}; expected a fraction in (0, 1)."
            )
        if self.c_s is not None and not 0.0 < self.c_s <= 1.0:
            raise ValueError(f"RecipeConfig.c_s: got {self.c_s!r}; expected a value in (0, 1].")
        if self.gradient_target not in ("auto", "output", "loss", "pseudo_label", "random_label"):
            raise ValueError(
                f"RecipeConfig.gradient_target: got {self.gradient_target!r}; use 'auto', 'output', 'loss', "
                "'pseudo_label' or 'random_label'."
            )

    @property
    def resolved_target(self) -> str:
        if self.gradient_target != "auto":
            return self.gradient_target
        return "output" if self.task == "regression" else "loss"

    @property
    def resolved_cache_dir(self) -> str:
        return self.cache_dir or str(Path(DEFAULT_OUTPUT_DIR) / "cache")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- prepared task


@dataclass
class PreparedTask:
    """Everything the per-seed loop needs: the pool, the test split, how to build and feed a model."""

    train: Any  # datasets.Dataset: the selection pool (what coresets index into)
    test: Any
    task: str
    num_labels: int
    input_columns: list[str]
    build_model: Any  # callable(seed) -> nn.Module
    base_collator: Any
    tokenizer: Any
    model_id: str
    extract_kwargs: dict[str, Any]
    dataset_name: str = "dataset"


def _num_classes(train: Any, test: Any) -> int:
    feature = train.features.get("label")
    if getattr(feature, "num_classes", None):
        return int(feature.num_classes)
    return int(max(max(train["label"]), max(test["label"]))) + 1


def _load_encoder(config: RecipeConfig):
    from transformers import AutoTokenizer

    from hf_skmm.integrations.data import minilm_path

    path = config.model_path or str(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    return path, tokenizer


def prepare_task(
    config: RecipeConfig, data: Any = None, encoder: Any = None, tokenizer: Any = None
) -> PreparedTask:
    """Load the data and the model, build features (linear probing) or tokens (LoRA).

    Args:
        config: the recipe config.
        data: optional ``DatasetDict(train, test)`` with ``text`` and ``label`` (default: VADER).
        encoder: optional encoder / sequence-classification model to use instead of ``config.model_path``
            (tests pass a tiny in-code BERT); with ``mode="lora"`` it must be a
            ``*ForSequenceClassification`` model, built per seed by deep-copying it.
        tokenizer: its tokenizer (required with ``encoder``).
    """
    import copy

    from transformers import AutoModel, AutoModelForSequenceClassification, DataCollatorWithPadding

    from hf_skmm.integrations.data import load_vader

    dataset_name = "in-memory dataset"
    if data is None:
        data = load_vader(config.task, seed=config.split_seed, test_size=config.test_size)
        dataset_name = f"VADER lexicon ({config.task})"
    train, test = data["train"], data["test"]
    if config.pool_size and config.pool_size < len(train):
        train = train.shuffle(seed=config.split_seed).select(range(config.pool_size)).flatten_indices()
    num_labels = 1 if config.task == "regression" else _num_classes(train, test)
    if encoder is None:
        model_id, tokenizer = _load_encoder(config)
    else:
        if tokenizer is None:
            raise ValueError("prepare_task: pass the tokenizer of the encoder you passed.")
        model_id = f"{type(encoder).__name__}:{_hash([float(p.detach().double().sum()) for p in encoder.parameters()])}"
    cache_dir = config.resolved_cache_dir

    if config.mode == "linear_probe":
        if encoder is None:
            encoder_model = AutoModel.from_pretrained(model_id)
        else:
            encoder_model = getattr(encoder, "base_model", encoder)
        encoder_model.requires_grad_(False)
        kwargs = dict(
            encoder=encoder_model,
            tokenizer=tokenizer,
            model_id=f"{model_id}|{config.pooling}",
            pooling=config.pooling,
            max_length=config.max_length,
            cache_dir=cache_dir,
        )
        train = encode_features(train, desc="Encoding train features", **kwargs)
        test = encode_features(test, desc="Encoding test features", **kwargs)
        in_dim = len(train[0]["features"])
        train = train.with_format("numpy", columns=["features", "label"], output_all_columns=True)
        test = test.with_format("numpy", columns=["features", "label"], output_all_columns=True)
        return PreparedTask(
            train=train,
            test=test,
            task=config.task,
            num_labels=num_labels,
            input_columns=["features"],
            build_model=lambda seed: LinearProbe(
                in_dim,
                num_labels,
                seed=seed,
                name_or_path=f"{model_id} (frozen, {config.pooling} pooling) + linear probe",
            ),
            base_collator=None,
            tokenizer=tokenizer,
            model_id=model_id,
            extract_kwargs={},
            dataset_name=dataset_name,
        )

    # LoRA: tokenise once; the model is rebuilt (pretrained weights + fresh adapter/head) per seed
    from peft import LoraConfig, TaskType, get_peft_model

    def tokenize(batch: dict[str, list]) -> dict[str, Any]:
        return tokenizer(batch["text"], truncation=True, max_length=config.max_length)

    train = train.map(tokenize, batched=True, desc="Tokenizing train")
    test = test.map(tokenize, batched=True, desc="Tokenizing test")
    input_columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in train.column_names]
    problem_type = "regression" if config.task == "regression" else "single_label_classification"

    def build_model(seed: int):
        torch.manual_seed(seed)
        if encoder is None:
            base = AutoModelForSequenceClassification.from_pretrained(
                model_id, num_labels=num_labels, problem_type=problem_type
            )
        else:
            base = copy.deepcopy(encoder)
            base.classifier.reset_parameters()
        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=0.0,
            target_modules=list(config.lora_target_modules),
        )
        return get_peft_model(base, lora)

    return PreparedTask(
        train=train,
        test=test,
        task=config.task,
        num_labels=num_labels,
        input_columns=input_columns,
        build_model=build_model,
        base_collator=DataCollatorWithPadding(tokenizer),
        tokenizer=tokenizer,
        model_id=model_id,
        extract_kwargs={"tokenizer": tokenizer, "max_length": config.max_length},
        dataset_name=dataset_name,
    )


# --------------------------------------------------------------------------- steps


def extract_step(prepared: PreparedTask, config: RecipeConfig, seed: int, model: Any = None):
    """Sketch the per-example gradients of the trainable parameters of a fresh model (step 1)."""
    from accelerate import PartialState

    from hf_skmm.gradients import GradientConfig
    from hf_skmm.integrations.extract import extract_sketches
    from hf_skmm.sketch import SketchConfig

    model = model if model is not None else prepared.build_model(seed)
    gradient_config = GradientConfig(
        params="head" if config.mode == "linear_probe" else "lora",
        target=config.resolved_target,
        task=prepared.task,
    )
    sketch_config = SketchConfig(kind=config.sketch_kind, dim=config.sketch_dim, seed=seed)
    sketched = extract_sketches(
        model,
        prepared.train,
        gradient_config,
        sketch_config,
        batch_size=config.extract_batch_size,
        accelerator=PartialState(cpu=not torch.cuda.is_available()),
        cache_dir=str(Path(config.resolved_cache_dir) / "sketches"),
        label_column="label",
        **prepared.extract_kwargs,
    )
    return sketched


def _class_probabilities(prepared: PreparedTask, seed: int) -> np.ndarray:
    """Class probabilities for margin / entropy baselines (DeepCore's protocol: a model trained on the full pool
    for one epoch scores every row). Uses the linear probe on cached features."""
    from transformers import default_data_collator

    model = prepared.build_model(seed)
    config = TrainConfig(num_epochs=1.0, min_steps=0, seed=seed)
    train_and_evaluate(
        model,
        prepared.train,
        prepared.test,
        prepared.task,
        prepared.input_columns,
        config,
        output_dir=str(Path(DEFAULT_OUTPUT_DIR) / "tmp-probs"),
        base_collator=prepared.base_collator,
    )
    model.eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(prepared.train), 1024):
            chunk = prepared.train.select(range(start, min(start + 1024, len(prepared.train))))
            batch = (prepared.base_collator or default_data_collator)(
                [{k: ex[k] for k in prepared.input_columns} for ex in chunk]
            )
            device = next(model.parameters()).device
            logits = model(**{k: v.to(device) for k, v in batch.items()})["logits"]
            rows.append(torch.softmax(logits.float(), -1).cpu().numpy())
    return np.concatenate(rows)


def select_step(
    prepared: PreparedTask, sketched: Any, config: RecipeConfig, method: str, seed: int, probs=None
):
    """Cut one coreset (step 2): ``(coreset Dataset, SelectionResult)``."""
    from hf_skmm.integrations.coreset import select_coreset

    kwargs: dict[str, Any] = {}
    if method == "skmm" and config.c_s is not None:
        kwargs["c_s"] = config.c_s
    if method in PROBABILITY_METHODS:
        if probs is None:
            raise ValueError(
                f"method={method!r} needs class probabilities; it only applies to classification."
            )
        kwargs["probs"] = probs
    stratify_by = "label" if (config.stratify and config.task == "classification") else None
    return select_coreset(
        prepared.train, sketched, n=config.n, method=method, seed=seed, stratify_by=stratify_by, **kwargs
    )


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def headline_metric(task: str) -> tuple[str, bool]:
    """The metric a summary leads with and whether higher is better."""
    return ("mse", False) if task == "regression" else ("accuracy", True)


@contextlib.contextmanager
def quiet_datasets():
    """Hide datasets' per-operation progress bars (select / flatten / save) inside the recipe's own bar."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def run_recipe(
    config: RecipeConfig,
    train_config: TrainConfig | None = None,
    data: Any = None,
    encoder: Any = None,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Run the recipe for every seed and method; write ``results.json``, ``summary.md`` and the coresets.

    Layout of ``config.output_dir``: ``coresets/<method>-n<n>-seed<seed>/`` (a ``load_from_disk`` dataset
    with ``selection/`` and a card, readable with :func:`~hf_skmm.integrations.coreset.load_coreset`) and
    ``report/`` with ``results.json`` (config, per-run rows, aggregate, headline) and ``summary.md``.

    Returns:
        The ``results.json`` payload: ``{"config", "train_config", "runs": [...], "aggregate": {...},
        "headline": {...}}``.
    """
    from tqdm.auto import tqdm

    train_config = train_config or TrainConfig()
    started = time.time()
    prepared = prepare_task(config, data=data, encoder=encoder, tokenizer=tokenizer)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    variants = [(m, train_config.weighted) for m in config.methods]
    if config.compare_weighted and not train_config.weighted:
        variants += [(m, True) for m in config.methods if m != "uniform"]
    runs: list[dict[str, Any]] = []
    bar = tqdm(total=len(config.seeds) * len(variants), desc="Train + evaluate", unit="run")
    for seed in config.seeds:
        with quiet_datasets():
            seed_runs = _run_seed(prepared, config, train_config, variants, seed, output_dir, bar)
        runs.extend(seed_runs)
    bar.close()
    return _finish(config, train_config, prepared, runs, variants, output_dir, started)


def _run_seed(prepared, config, train_config, variants, seed, output_dir, bar) -> list[dict[str, Any]]:
    from hf_skmm.integrations.card import build_card
    from hf_skmm.integrations.coreset import save_coreset, sketch_matrix
    from hf_skmm.selection import achieved_c_s

    runs: list[dict[str, Any]] = []
    t0 = time.time()
    sketched = extract_step(prepared, config, seed)
    extract_seconds = time.time() - t0
    sketches = sketch_matrix(sketched)
    probs = None
    if any(m in PROBABILITY_METHODS for m in config.methods):
        probs = _class_probabilities(prepared, seed)
    coresets: dict[str, Any] = {}
    for method in config.methods:
        coreset, result = select_step(prepared, sketched, config, method, seed, probs=probs)
        coresets[method] = (coreset, result)
        if config.save_coresets:
            card = build_card(
                result,
                source_dataset=prepared.dataset_name,
                num_source_rows=len(prepared.train),
                reproduce_command=f"hf-skmm run --n {config.n} --seeds {seed} --methods {method}",
            )
            save_coreset(
                coreset.select_columns([c for c in coreset.column_names if c != "features"]).with_format(
                    None
                ),
                result,
                output_dir / CORESETS_DIR / f"{method}-n{config.n}-seed{seed}",
                card=card,
                overwrite=True,
            )
    for method, weighted in variants:
        coreset, result = coresets[method]
        cfg = dataclasses.replace(train_config, weighted=weighted, seed=seed)
        model = prepared.build_model(seed)
        scores = train_and_evaluate(
            model,
            coreset,
            prepared.test,
            prepared.task,
            prepared.input_columns,
            cfg,
            output_dir=str(output_dir / "trainer"),
            base_collator=prepared.base_collator,
        )
        c_s = result.info.get("c_s_achieved")
        if c_s is None:
            c_s = achieved_c_s(sketches, result.indices)
        runs.append(
            {
                "method": method,
                "weighted": weighted,
                "seed": seed,
                "n": len(coreset),
                "c_s_achieved": float(c_s),
                "extract_seconds": extract_seconds,
                **{k: float(v) for k, v in scores.items()},
            }
        )
        bar.update(1)
    return runs


def _finish(config, train_config, prepared, runs, variants, output_dir, started) -> dict[str, Any]:
    from hf_skmm.integrations.io import atomic_output_dir

    metric, higher_is_better = headline_metric(config.task)
    aggregate: dict[str, dict[str, Any]] = {}
    for method, weighted in variants:
        name = f"{method}+weighted" if weighted else method
        rows = [r for r in runs if r["method"] == method and r["weighted"] == weighted]
        aggregate[name] = {
            key: dict(zip(("mean", "std"), _mean_std([r[key] for r in rows])))
            for key in rows[0]
            if key not in ("method", "weighted", "seed") and isinstance(rows[0][key], float)
        }
    suffix = "+weighted" if train_config.weighted else ""
    lead = config.methods[0] + suffix
    base = (
        config.baseline + suffix
        if config.baseline in config.methods and config.baseline != config.methods[0]
        else None
    )
    headline = {"metric": metric, "higher_is_better": higher_is_better, "method": lead, "baseline": base}
    if base is not None:
        diff = aggregate[lead][metric]["mean"] - aggregate[base][metric]["mean"]
        headline["difference"] = diff
        headline["winner"] = lead if (diff > 0) == higher_is_better and diff != 0 else base
    payload = {
        "config": config.to_dict(),
        "train_config": train_config.to_dict(),
        "dataset": prepared.dataset_name,
        "output_dir": str(output_dir),
        "num_train": len(prepared.train),
        "num_test": len(prepared.test),
        "runs": runs,
        "aggregate": aggregate,
        "headline": headline,
        "seconds": time.time() - started,
    }
    with atomic_output_dir(output_dir / REPORT_DIR, overwrite=True) as tmp:
        (tmp / "results.json").write_text(json.dumps(payload, indent=2))
        (tmp / "summary.md").write_text(format_summary(payload))
    return payload


def format_summary(payload: dict[str, Any]) -> str:
    """A one-screen markdown summary of :func:`run_recipe`'s payload."""
    config, head = payload["config"], payload["headline"]
    metric = head["metric"]
    lines = [
        f"# hf-skmm run: {payload['dataset']}, {config['mode']}, n = {config['n']} of {payload['num_train']} "
        f"(test {payload['num_test']}), seeds {config['seeds']}",
        "",
        f"| method | {metric} | " + " | ".join(k for k in _secondary(config["task"])) + " | c_S achieved |",
        "|---|---|" + "---|" * len(_secondary(config["task"])) + "---|",
    ]
    for name, agg in payload["aggregate"].items():
        cells = [f"{agg[metric]['mean']:.4f} ± {agg[metric]['std']:.4f}"]
        cells += [f"{agg[k]['mean']:.4f} ± {agg[k]['std']:.4f}" for k in _secondary(config["task"])]
        cells.append(f"{agg['c_s_achieved']['mean']:.3g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if head.get("baseline"):
        better = "lower" if not head["higher_is_better"] else "higher"
        lines += [
            "",
            f"{head['method']} vs {head['baseline']}: Δ{metric} = {head['difference']:+.4f} ({better} is better) "
            f"→ {head['winner']} wins on the mean over {len(config['seeds'])} seed(s).",
        ]
    return "\n".join(lines) + "\n"


def _secondary(task: str) -> tuple[str, ...]:
    return ("pearson", "mae") if task == "regression" else ("macro_f1",)

"""Step (1) of the pipeline: ``(model, Dataset) -> sketch Dataset`` with ``Dataset.map`` under Accelerate.

:func:`extract_sketches` runs the gradient layer (:class:`hf_skmm.GradientSketcher`) over a
``datasets.Dataset`` and returns a Dataset with one row per source row: ``skmm_index`` (the row number in
the source) and ``skmm_sketch`` (its sketched per-example gradient, float32 of length m).

How the work is laid out, and why:

* **Chunks.** The rows are cut into chunks of ``rows_per_chunk`` consecutive rows. Each chunk is one
  ``Dataset.map(batched=True, with_indices=True, new_fingerprint=...)`` whose output file is the chunk's
  ``cache_file_name``: ``datasets`` writes it to a temporary file in the same folder and renames it when the
  map finishes, so a chunk file with its final name is always complete (the rename is the "done" marker) and
  a killed run leaves at most an orphan temporary file, which is never read and is removed later.
* **Resume.** On the next call the finished chunk files are kept and only the row ranges they do not cover
  are computed: nothing is lost, duplicated or recomputed beyond the chunk that was interrupted.
* **Processes.** Under ``torchrun`` / ``accelerate launch`` each process takes a contiguous run of the
  pending chunks (a contiguous shard, like ``Dataset.shard(contiguous=True)`` but cut on chunk
  boundaries, so the chunk files do not depend on the number of processes and a run may resume with another
  world size). After ``wait_for_everyone()`` the main process checks that the chunks tile ``[0, N)``,
  writes a manifest (atomically), and every process then opens the same files in row order: every process
  returns the same Dataset, equal to the single-process result.
* **Cache key.** The folder is ``<cache root>/<fingerprint>/`` where the fingerprint hashes the source
  dataset's fingerprint, the model identity, the adapter config, the gradient and sketch configs (seed
  included), the preprocessing and the package version (:mod:`hf_skmm.integrations.fingerprint`). A second
  call with the same inputs opens the finished files without building the gradient layer or calling the
  model; changing any ingredient gives a new folder. ``batch_size`` and the number of processes are not
  ingredients: they change the result only at float-rounding level (padding, summation order).
* **Inputs.** The data collator runs inside the map function, on the model's input columns only (the
  columns its ``forward`` accepts plus the label column), the way ``Trainer`` drops unused columns.
  ``DataCollatorWithPadding`` is used when a tokenizer is given, ``default_data_collator`` otherwise. A raw
  text column is tokenised inside the map when the model's main input is missing and a tokenizer is given.

The cache root is ``cache_dir`` when given, else a ``hf_skmm`` folder next to the dataset's cache files,
else ``$HF_DATASETS_CACHE/hf_skmm`` (in-memory datasets are cached too: the key is the fingerprint, not a
file). The cache folder must be visible to every process (a shared filesystem on several nodes).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hf_skmm import __version__
from hf_skmm.integrations.fingerprint import (
    MODEL_HASH_POLICIES,
    adapter_config,
    extraction_fingerprint,
    model_identity,
    to_jsonable,
)
from hf_skmm.integrations.provenance import PROVENANCE_FORMAT, attach_provenance

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)

INDEX_COLUMN = "skmm_index"
SKETCH_COLUMN = "skmm_sketch"
LABEL_NAMES = ("labels", "label", "label_ids")
DEFAULT_ROWS_PER_CHUNK = 2048
CACHE_SUBDIR = "hf_skmm"
MANIFEST_NAME = "manifest.json"
_CHUNK_RE = re.compile(r"^chunk-(\d{12})-(\d{12})\.arrow$")


@dataclass
class ExtractConfig:
    """Options of the extraction step (``hf-skmm extract``), passed on to :func:`extract_sketches`.

    ``ExtractConfig(...).to_kwargs()`` gives the keyword arguments of ``extract_sketches`` besides the model,
    dataset, gradient/sketch configs, tokenizer, collator and accelerator.
    """

    batch_size: int = field(default=32, metadata={"help": "Examples per gradient batch."})
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the sketch cache (default: next to the dataset's cache files, "
            "else $HF_DATASETS_CACHE/hf_skmm)."
        },
    )
    text_column: str | None = field(
        default=None,
        metadata={"help": "Raw text column to tokenise when the dataset is not tokenised (default: 'text')."},
    )
    label_column: str | None = field(
        default=None, metadata={"help": "Label column, passed to the model as 'labels' (default: auto)."}
    )
    max_length: int | None = field(
        default=None, metadata={"help": "Truncate tokenised text to this many tokens (default: no limit)."}
    )
    rows_per_chunk: int | None = field(
        default=None,
        metadata={
            "help": f"Rows per resumable cache chunk (default: {DEFAULT_ROWS_PER_CHUNK}, "
            "at least batch_size)."
        },
    )
    model_hash: str = field(
        default="auto",
        metadata={"help": f"How the model weights enter the cache key: one of {list(MODEL_HASH_POLICIES)}."},
    )

    def __post_init__(self) -> None:
        _check_positive_int("batch_size", self.batch_size)
        if self.max_length is not None:
            _check_positive_int("max_length", self.max_length)
        if self.rows_per_chunk is not None:
            _check_positive_int("rows_per_chunk", self.rows_per_chunk)
        if self.model_hash not in MODEL_HASH_POLICIES:
            raise ValueError(
                f"model_hash={self.model_hash!r} is not a known policy; use one of {list(MODEL_HASH_POLICIES)}."
            )

    def to_kwargs(self) -> dict[str, Any]:
        return asdict(self)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class _InputPlan:
    """Which source columns feed the model, and how (decided once, before any work)."""

    columns: list[str]  # source columns read by the map (model inputs, text, label)
    text_column: str | None  # tokenised inside the map when set
    label_column: str | None  # passed to the collator as "labels"
    accepted: set[str] | None  # forward() argument names (None: accepts **kwargs)


def _forward_signature(model: torch.nn.Module) -> tuple[set[str] | None, list[str]]:
    """(names ``forward`` accepts or None for ``**kwargs``, names it requires)."""
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model  # peft wrappers forward **kwargs to the base model
    params = [p for name, p in inspect.signature(base.forward).parameters.items() if name != "self"]
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    # like Trainer's unused-column removal, a ``**kwargs`` (transformers' attention kwargs) does not make
    # every column an input; only a forward() taking nothing but ``**kwargs`` accepts any column
    has_kwargs = any(p.kind == p.VAR_KEYWORD for p in params)
    accepted = None if has_kwargs and not named else {p.name for p in named}
    main_input = getattr(base, "main_input_name", None)
    if isinstance(main_input, str):
        required = [main_input]
    else:
        required = [p.name for p in named if p.default is inspect.Parameter.empty]
    return accepted, required


def _is_causal_lm(model: torch.nn.Module, gradient_config: Any) -> bool:
    """Causal LM losses take their labels from ``input_ids`` (the gradient layer's rule)."""
    from hf_skmm.gradients import detect_task

    return detect_task(model, str(getattr(gradient_config, "task", "auto"))) == "causal_lm"


def _is_string_column(dataset: datasets.Dataset, column: str) -> bool:
    feature = dataset.features.get(column)
    return getattr(feature, "dtype", None) in ("string", "large_string")


def _plan_inputs(
    model: torch.nn.Module,
    dataset: datasets.Dataset,
    gradient_config: Any,
    tokenizer: Any,
    text_column: str | None,
    label_column: str | None,
) -> _InputPlan:
    columns = list(dataset.column_names)
    accepted, required = _forward_signature(model)

    if label_column is not None and label_column not in columns:
        raise ValueError(
            f"label_column={label_column!r} is not a column of dataset (columns: {columns}); "
            "pass the name of the label column or None."
        )
    label = label_column or next((name for name in LABEL_NAMES if name in columns), None)

    if text_column is not None and text_column not in columns:
        raise ValueError(
            f"text_column={text_column!r} is not a column of dataset (columns: {columns}); "
            "pass the name of the raw text column."
        )
    missing = [name for name in required if name not in columns]
    tokenize_column = None
    if text_column is not None or missing:
        candidate = text_column
        if candidate is None:
            strings = [c for c in columns if _is_string_column(dataset, c)]
            candidate = "text" if "text" in strings else (strings[0] if len(strings) == 1 else None)
        if candidate is not None and _is_string_column(dataset, candidate):
            if tokenizer is None:
                raise ValueError(
                    f"dataset column {candidate!r} holds raw text and the model needs {missing or required} "
                    "but tokenizer=None; pass tokenizer= (tokenised inside the map) or tokenise first with "
                    "dataset.map(lambda b: tokenizer(b['text'], truncation=True), batched=True)."
                )
            tokenize_column = candidate
        elif missing:
            raise ValueError(
                f"dataset has no column {missing} that the model's forward() needs (columns: {columns}); "
                "add them (e.g. tokenise the text with a tokenizer) or pass tokenizer= and text_column=."
            )
        else:
            raise ValueError(f"text_column={text_column!r} is not a string column; pass a raw text column.")

    if (
        label is None
        and getattr(gradient_config, "target", None) == "loss"
        and not _is_causal_lm(model, gradient_config)
    ):
        raise ValueError(
            f"gradient_config.target='loss' needs a label column but dataset has none of {list(LABEL_NAMES)} "
            f"(columns: {columns}); pass label_column=, add labels, or use a label-free target."
        )

    keep = []
    for name in columns:
        if name in (label, tokenize_column):
            keep.append(name)
        elif name in LABEL_NAMES or _is_string_column(dataset, name):
            continue  # other label-like / raw string columns never reach the model
        elif tokenize_column is None and (accepted is None or name in accepted):
            keep.append(name)
    return _InputPlan(columns=keep, text_column=tokenize_column, label_column=label, accepted=accepted)


def _make_collator(tokenizer: Any, data_collator: Callable | None) -> Callable:
    if data_collator is not None:
        if not callable(data_collator):
            raise TypeError(
                f"data_collator must be callable (list of examples -> batch), got {data_collator!r}."
            )
        return data_collator
    if tokenizer is not None:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)
    from transformers import default_data_collator

    return default_data_collator


def _examples_from_batch(
    batch: Mapping[str, list], plan: _InputPlan, tokenizer: Any, max_length: int | None
) -> list[dict[str, Any]]:
    """Columnar map batch -> list of per-example dicts holding only model inputs (labels as "labels")."""
    inputs: dict[str, list] = {}
    if plan.text_column is not None:
        encoded = tokenizer(batch[plan.text_column], truncation=max_length is not None, max_length=max_length)
        inputs.update(
            {k: v for k, v in encoded.items() if plan.accepted is None or k in plan.accepted or k == "labels"}
        )
    for name in plan.columns:
        if name == plan.text_column:
            continue
        inputs["labels" if name == plan.label_column else name] = batch[name]
    size = len(next(iter(inputs.values())))
    return [{k: v[i] for k, v in inputs.items()} for i in range(size)]


def _check_uniform_lengths(dataset: datasets.Dataset, plan: _InputPlan) -> None:
    """default_data_collator cannot pad: fail early (before any write) on ragged sequence columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in plan.columns:
        column = dataset.data.column(name)
        if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
            continue
        lengths = pc.list_value_length(column)
        if len(lengths) and pc.min(lengths).as_py() != pc.max(lengths).as_py():
            raise ValueError(
                f"dataset column {name!r} holds sequences of different lengths and neither tokenizer= nor "
                "data_collator= was given, so they cannot be padded; pass tokenizer= "
                "(DataCollatorWithPadding) or a padding data_collator=."
            )


# ---------------------------------------------------------------------------------------------- cache


def _writable_dir(path: str) -> str | None:
    """``None`` when ``path`` can be created and written, else the reason it cannot."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        return f"{type(err).__name__}: {err}"
    return None


def _resolve_cache_root(cache_dir: str | os.PathLike | None, dataset: datasets.Dataset) -> str:
    if cache_dir is not None:
        root = os.path.abspath(os.fspath(cache_dir))
        reason = _writable_dir(root)
        if reason is not None:
            raise ValueError(
                f"cache_dir={os.fspath(cache_dir)!r} is not a writable folder ({reason}); pass a folder you "
                "can write to (visible to every process)."
            )
        return root
    from datasets import config

    candidates = [os.path.join(os.path.dirname(f["filename"]), CACHE_SUBDIR) for f in dataset.cache_files[:1]]
    candidates.append(os.path.join(str(config.HF_DATASETS_CACHE), CACHE_SUBDIR))
    reasons = []
    for root in candidates:
        reason = _writable_dir(root)
        if reason is None:
            return os.path.abspath(root)
        reasons.append(f"{root}: {reason}")
    raise ValueError(f"no writable cache folder ({'; '.join(reasons)}); pass cache_dir= a writable folder.")


def _chunk_name(start: int, end: int) -> str:
    return f"chunk-{start:012d}-{end:012d}.arrow"


def _finished_chunks(work_dir: str) -> list[tuple[int, int]]:
    """Row ranges of the chunk files with their final name (complete by construction), sorted."""
    if not os.path.isdir(work_dir):
        return []
    ranges = []
    for name in os.listdir(work_dir):
        match = _CHUNK_RE.match(name)
        if match:
            ranges.append((int(match.group(1)), int(match.group(2))))
    return sorted(ranges)


def _pending_chunks(done: list[tuple[int, int]], num_rows: int, rows_per_chunk: int) -> list[tuple[int, int]]:
    """Cut every row range not covered by ``done`` into chunks of at most ``rows_per_chunk`` rows."""
    pending, cursor = [], 0
    for start, end in [*done, (num_rows, num_rows)]:
        while cursor < min(start, num_rows):
            stop = min(cursor + rows_per_chunk, start)
            pending.append((cursor, stop))
            cursor = stop
        cursor = max(cursor, end)
    return pending


def _check_tiling(done: list[tuple[int, int]], num_rows: int, work_dir: str) -> None:
    cursor = 0
    for start, end in done:
        if start != cursor:
            raise RuntimeError(
                f"sketch cache {work_dir!r} has chunks that do not tile rows [0, {num_rows}) "
                f"(expected a chunk starting at {cursor}, found [{start}, {end})); another run with other "
                "settings may be writing there: delete the folder and run again."
            )
        cursor = end
    if cursor != num_rows:
        raise RuntimeError(
            f"sketch cache {work_dir!r} covers rows [0, {cursor}) of {num_rows} after extraction."
        )


def _write_json_atomic(path: str, payload: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, sort_keys=True, indent=1)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; other users of a shared cache must read it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _load_manifest(work_dir: str, num_rows: int) -> dict | None:
    path = os.path.join(work_dir, MANIFEST_NAME)
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return None
    if manifest.get("num_rows") != num_rows or not all(
        os.path.isfile(os.path.join(work_dir, name)) for name in manifest.get("chunks", [])
    ):
        return None
    return manifest


def _open_result(work_dir: str, manifest: dict) -> datasets.Dataset:
    from datasets import Dataset, concatenate_datasets

    parts = [Dataset.from_file(os.path.join(work_dir, name)) for name in manifest["chunks"]]
    result = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    attach_provenance(result, manifest["provenance"])
    # the extraction fingerprint names this result, so later cached transforms on it are reused too
    result._fingerprint = manifest["fingerprint"]
    return result


def _remove_orphans(work_dir: str) -> None:
    """Delete temporary files left by killed runs (never read: they lack a final chunk name)."""
    for name in os.listdir(work_dir):
        if name.startswith("tmp") or name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(work_dir, name))


@contextlib.contextmanager
def _datasets_bars_disabled():
    """One tqdm bar per process over all its rows reads better than one ``datasets`` bar per chunk."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


# ------------------------------------------------------------------------------------------ processes


def _state(accelerator: Any):
    if accelerator is not None:
        return accelerator.state if hasattr(accelerator, "state") else accelerator
    from accelerate import PartialState

    return PartialState()


def _same_on_all_processes(state: Any, value: str, what: str) -> None:
    if state.num_processes == 1:
        return
    from accelerate.utils import gather_object

    values = gather_object([value])
    if len(set(values)) != 1:
        raise ValueError(
            f"the {what} differs between processes ({values}); every process must hold the same model "
            "weights, dataset and configs (seed the model initialisation, load the same checkpoint)."
        )


def _broadcast(state: Any, value: Any) -> Any:
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def _build_sketcher(model: torch.nn.Module, gradient_config: Any, sketch_config: Any) -> Any:
    from hf_skmm.gradients import GradientSketcher

    return GradientSketcher(model, gradient_config, sketch_config)


# ------------------------------------------------------------------------------------------------ API


def extract_sketches(
    model: torch.nn.Module,
    dataset: datasets.Dataset,
    gradient_config: Any,
    sketch_config: Any,
    tokenizer: Any = None,
    data_collator: Callable | None = None,
    batch_size: int = 32,
    accelerator: Any = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    max_length: int | None = None,
    rows_per_chunk: int | None = None,
    model_hash: str = "auto",
) -> datasets.Dataset:
    """Sketch the per-example gradient of every row of ``dataset``; cached, multi-process and resumable.

    Args:
        model: a ``transformers`` / peft model or a plain ``nn.Module``; moved to the Accelerate device and
            put in eval mode while sketching (its training mode is restored afterwards).
        dataset: the source ``datasets.Dataset`` (tokenised, or with a raw text column and ``tokenizer``).
        gradient_config: a :class:`hf_skmm.GradientConfig` (which parameters, which target).
        sketch_config: a :class:`hf_skmm.SketchConfig` (kind, dimension m, seed).
        tokenizer: pads batches with ``DataCollatorWithPadding`` and tokenises a raw text column.
        data_collator: list of examples -> batch of tensors; overrides the tokenizer's padding collator.
        batch_size: examples per gradient batch.
        accelerator: an ``accelerate.Accelerator`` or ``PartialState``; default ``PartialState()``, which
            picks up ``torchrun`` / ``accelerate launch`` (use ``PartialState(cpu=True)`` to force CPU).
        cache_dir: cache root (see the module doc for the default).
        text_column: raw text column to tokenise (default ``"text"``, or the only string column).
        label_column: the label column, passed as ``labels`` (default: ``labels``/``label``/``label_ids``).
        max_length: truncation length when tokenising.
        rows_per_chunk: rows per resumable chunk file (default ``min(2048, ceil(N / num_processes))``, at
            least ``batch_size``). Any value resumes any earlier run: only uncovered rows are computed.
        model_hash: how the weights enter the cache key, see :func:`~hf_skmm.integrations.fingerprint.model_identity`.

    Returns:
        A ``datasets.Dataset`` with ``len(dataset)`` rows in source order and the columns ``skmm_index``
        (int64, row number in ``dataset``) and ``skmm_sketch`` (float32, length m). Its provenance (source
        fingerprint, model, configs) is in :func:`hf_skmm.integrations.provenance.get_provenance`. Every
        process gets the same Dataset.

    Raises:
        ValueError: empty dataset, missing model inputs, raw text without tokenizer, missing labels for
            ``target="loss"``, ragged sequences without a padding collator, non-writable ``cache_dir``.
    """
    import datasets
    from tqdm.auto import tqdm

    # -- validate everything before anything is written --------------------------------------------------
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"dataset must be a datasets.Dataset, got {type(dataset).__name__}; for a DatasetDict pass one "
            "split, e.g. dataset['train']."
        )
    if len(dataset) == 0:
        raise ValueError("dataset is empty (0 rows); pass a dataset with at least one row.")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    config = ExtractConfig(
        batch_size=batch_size,
        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        text_column=text_column,
        label_column=label_column,
        max_length=max_length,
        rows_per_chunk=rows_per_chunk,
        model_hash=model_hash,
    )
    num_rows = len(dataset)
    state = _state(accelerator)
    # default: at most DEFAULT_ROWS_PER_CHUNK, and small enough that every process gets a chunk
    default_chunk = min(DEFAULT_ROWS_PER_CHUNK, -(-num_rows // state.num_processes))
    chunk_rows = max(config.rows_per_chunk or default_chunk, config.batch_size)

    plan = _plan_inputs(model, dataset, gradient_config, tokenizer, text_column, label_column)
    collator = _make_collator(tokenizer, data_collator)
    if data_collator is None and tokenizer is None:
        _check_uniform_lengths(dataset, plan)
    # collate two rows now: a collator / column problem surfaces here, not after an hour of sketching
    probe = dataset.select(range(min(2, num_rows))).select_columns(plan.columns).with_format(None)[:]
    try:
        collator(_examples_from_batch(probe, plan, tokenizer, max_length))
    except Exception as err:
        raise ValueError(
            f"the data collator cannot batch the model inputs {plan.columns} of dataset ({type(err).__name__}: "
            f"{err}); pass tokenizer= for padding or a data_collator= that accepts these columns."
        ) from err

    root = _resolve_cache_root(cache_dir, dataset)
    # building the gradient layer is cheap (parameter layout only; no forward pass) and validates the configs
    sketcher = _build_sketcher(model, gradient_config, sketch_config)

    # -- the cache key -------------------------------------------------------------------------------------
    identity = model_identity(model, model_hash=config.model_hash)
    preprocessing = {
        "columns": plan.columns,
        "text_column": plan.text_column,
        "label_column": plan.label_column,
        "max_length": max_length,
        "tokenizer": _hash_object(tokenizer),
        "data_collator": _hash_object(data_collator),
    }
    source = {
        "fingerprint": dataset._fingerprint,
        "num_rows": num_rows,
        "column_names": list(dataset.column_names),
    }
    ingredients = {
        "source": source,
        "model": identity,
        "adapter": adapter_config(model),
        # everything that determines the gradient layer's output (configs minus speed-only knobs, layout)
        "sketcher": to_jsonable(sketcher.identity()),
        "preprocessing": preprocessing,
        "hf_skmm_version": __version__,
    }
    fingerprint = extraction_fingerprint(ingredients)
    _same_on_all_processes(state, fingerprint, "extraction fingerprint (model, dataset, configs)")

    work_dir = os.path.join(root, fingerprint)
    manifest = _load_manifest(work_dir, num_rows)
    if manifest is not None:
        logger.info("Reusing the sketches cached in %s", work_dir)
        return _open_result(work_dir, manifest)

    # -- compute the missing chunks ------------------------------------------------------------------------
    if state.is_main_process:
        os.makedirs(work_dir, exist_ok=True)
        pending = _pending_chunks(_finished_chunks(work_dir), num_rows, chunk_rows)
    else:
        pending = None
    pending = _broadcast(state, pending)
    mine = [
        pending[i] for i in np.array_split(np.arange(len(pending)), state.num_processes)[state.process_index]
    ]
    if pending and len(pending) < len(_pending_chunks([], num_rows, chunk_rows)):
        logger.info("Resuming the extraction in %s: %d chunk(s) left", work_dir, len(pending))

    if pending:
        if getattr(model, "hf_device_map", None) is None:  # a dispatched (device_map) model stays put
            model.to(state.device)
        was_training = model.training
        model.eval()  # dropout off: a per-example gradient must not depend on the batch it sits in
        try:
            features = datasets.Features(
                {
                    INDEX_COLUMN: datasets.Value("int64"),
                    SKETCH_COLUMN: datasets.List(datasets.Value("float32"), length=int(sketcher.out_dim)),
                }
            )
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            total = sum(end - start for start, end in mine)
            bar = tqdm(
                total=total,
                desc="Sketching gradients",
                unit="ex",
                disable=not state.is_local_main_process,
            )

            def sketch_batch(batch: Mapping[str, list], indices: list[int], offset: int) -> dict[str, Any]:
                collated = collator(_examples_from_batch(batch, plan, tokenizer, max_length))
                collated = {
                    k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in collated.items()
                }
                rows = torch.as_tensor(indices, dtype=torch.int64) + offset
                sketch = sketcher(collated, rows)
                if tuple(sketch.shape) != (len(rows), sketcher.out_dim):
                    raise RuntimeError(
                        f"the gradient sketcher returned shape {tuple(sketch.shape)} for a batch of "
                        f"{len(rows)} rows; expected ({len(rows)}, {sketcher.out_dim})."
                    )
                bar.update(len(rows))
                return {
                    INDEX_COLUMN: rows.numpy(),
                    SKETCH_COLUMN: sketch.detach().to("cpu", torch.float32).numpy(),
                }

            # enable_grad: the gradient layer differentiates even when the caller sits in torch.no_grad()
            with bar, _datasets_bars_disabled(), torch.enable_grad():
                for start, end in mine:
                    part = dataset.select(range(start, end)).select_columns(plan.columns).with_format(None)
                    part.map(
                        sketch_batch,
                        fn_kwargs={"offset": start},
                        batched=True,
                        batch_size=config.batch_size,
                        with_indices=True,
                        remove_columns=part.column_names,
                        features=features,
                        new_fingerprint=f"{fingerprint}-{start}",
                        cache_file_name=os.path.join(work_dir, _chunk_name(start, end)),
                        load_from_cache_file=True,
                        desc="Sketching gradients",
                    )
        finally:
            model.train(was_training)

    # -- assemble: main writes the manifest, then everyone opens the same files -----------------------
    state.wait_for_everyone()
    if state.is_main_process:
        done = _finished_chunks(work_dir)
        _check_tiling(done, num_rows, work_dir)
        chunks = [_chunk_name(start, end) for start, end in done]
        index = np.concatenate(
            [
                np.asarray(datasets.Dataset.from_file(os.path.join(work_dir, c)).data.column(INDEX_COLUMN))
                for c in chunks
            ]
        )
        if not np.array_equal(index, np.arange(num_rows)):
            raise RuntimeError(f"sketch cache {work_dir!r} holds rows out of order; delete it and run again.")
        first = datasets.Dataset.from_file(os.path.join(work_dir, chunks[0]))
        record = {
            "format": PROVENANCE_FORMAT,
            "fingerprint": fingerprint,
            "sketch_dim": int(first.features[SKETCH_COLUMN].length),
            "gradient_config": to_jsonable(gradient_config),
            "sketch_config": to_jsonable(sketch_config),
            **ingredients,
        }
        _write_json_atomic(
            os.path.join(work_dir, MANIFEST_NAME),
            {"fingerprint": fingerprint, "num_rows": num_rows, "chunks": chunks, "provenance": record},
        )
        _remove_orphans(work_dir)
    state.wait_for_everyone()
    manifest = _load_manifest(work_dir, num_rows)
    if manifest is None:
        raise RuntimeError(f"the sketch cache manifest in {work_dir!r} is missing after extraction.")
    return _open_result(work_dir, manifest)


def _hash_object(obj: Any) -> str | None:
    """A stable hash of a tokenizer / collator for the cache key (``datasets``' own Hasher)."""
    if obj is None:
        return None
    from datasets.fingerprint import Hasher

    try:
        return Hasher.hash(obj)
    except (
        Exception
    ):  # unpicklable object: fall back to its type (documented: then it does not key the cache)
        logger.warning("Could not hash %r for the sketch cache key; using its type name only.", type(obj))
        return f"{type(obj).__module__}.{type(obj).__qualname__}"

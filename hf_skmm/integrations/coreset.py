"""From a sketch dataset to a coreset ``Dataset``: select, cut, save, publish.

The functional core is :func:`select_coreset`::

    coreset, result = select_coreset(dataset, sketched, n=1000, method="skmm", seed=0)
    save_coreset(coreset, result, "coreset/", card=build_card(result, source_dataset="imdb"))
    push_coreset_to_hub(coreset, card, "user/imdb-skmm-1000", private=True)

``coreset`` is ``dataset.select(result.indices)`` plus the columns ``skmm_index`` (row in the source)
and ``skmm_weight`` (the selection weight). ``sketched`` must come from ``dataset``: same number of
rows and, when its provenance records one, the same fingerprint; anything else is refused, because
indices into another dataset would silently cut the wrong rows.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from hf_skmm.integrations.io import atomic_output_dir

logger = logging.getLogger(__name__)

INDEX_COLUMN = "skmm_index"
SKETCH_COLUMN = "skmm_sketch"
WEIGHT_COLUMN = "skmm_weight"
SELECTION_DIR = "selection"
CARD_FILE = "README.md"


# --------------------------------------------------------------------------- validation helpers


def resolve_n(n: int | None, fraction: float | None, num_rows: int) -> int:
    """The coreset size from exactly one of ``n`` (a count) or ``fraction`` (a share of ``num_rows``).

    ``fraction`` in (0, 1] gives ``round(fraction * num_rows)``, at least 1.
    """
    if (n is None) == (fraction is None):
        raise ValueError(
            f"pass exactly one of n (a number of examples) or fraction (a share in (0, 1]); got n={n!r}, "
            f"fraction={fraction!r}."
        )
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be a number in (0, 1], got fraction={fraction!r}.")
        return max(1, round(float(fraction) * num_rows))
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got n={n!r} of type {type(n).__name__}.")
    if n <= 0:
        raise ValueError(f"n must be a positive number of examples, got n={n}.")
    if n > num_rows:
        raise ValueError(
            f"n={n} is larger than the dataset (N={num_rows} rows); pass n <= {num_rows} or a fraction."
        )
    return int(n)


def get_sketch_provenance(sketched: Any) -> dict[str, Any]:
    """The provenance record written by extraction, or ``{}`` for a sketch dataset built by hand.

    Layout in :mod:`hf_skmm.integrations.provenance` (``source.fingerprint``, ``source.num_rows``,
    ``model``, ``adapter``, ``gradient_config``, ``sketch_config``, ``hf_skmm_version``).
    """
    try:
        from hf_skmm.integrations.provenance import get_provenance
    except ImportError:  # pragma: no cover - extraction layer missing
        return {}
    try:
        return dict(get_provenance(sketched))
    except ValueError:  # no record: nothing to check against but the row count
        return {}


def _fingerprint(dataset: Any) -> str | None:
    # datasets exposes no public accessor; _fingerprint is stable and persisted by save_to_disk
    return getattr(dataset, "_fingerprint", None)


def sketch_matrix(sketched: Any, num_rows: int | None = None) -> np.ndarray:
    """The ``[N, m]`` float32 matrix of a sketch dataset, row ``i`` = example ``i`` of the source.

    Rows are put in ``skmm_index`` order (extraction under several processes may write them in any
    order); the indices must be exactly ``0 .. N-1``.
    """
    missing = {INDEX_COLUMN, SKETCH_COLUMN} - set(sketched.column_names)
    if missing:
        raise ValueError(
            f"sketched lacks column(s) {sorted(missing)} (has {sketched.column_names}); pass the Dataset "
            "returned by extract_sketches / written by 'hf-skmm extract'."
        )
    # [:] reads whole columns as arrays (np.asarray on a lazy Column goes row by row: ~100x slower)
    table = sketched.with_format("numpy", columns=[INDEX_COLUMN, SKETCH_COLUMN])[:]
    index = np.asarray(table[INDEX_COLUMN], dtype=np.int64)
    matrix = np.asarray(table[SKETCH_COLUMN], dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(
            f"column {SKETCH_COLUMN!r} must hold fixed-length vectors (an N x m matrix), got shape {matrix.shape}."
        )
    expected = len(index) if num_rows is None else num_rows
    if len(index) != expected or not np.array_equal(np.sort(index), np.arange(expected)):
        raise ValueError(
            f"the {INDEX_COLUMN!r} column of sketched must be a permutation of 0..N-1 with N={expected}; "
            f"it has {len(index)} rows spanning [{index.min() if len(index) else '-'}, "
            f"{index.max() if len(index) else '-'}]. Re-run extraction on the full dataset."
        )
    out = np.empty_like(matrix)
    out[index] = matrix
    return out


def check_sketches_match(dataset: Any, num_rows: int, source_fingerprint: str | None = None) -> None:
    """Refuse sketches (or a selection) made from another dataset: row count, then source fingerprint.

    Args:
        dataset: the dataset about to be cut.
        num_rows: N of the dataset the sketches / selection were made from.
        source_fingerprint: that dataset's fingerprint, when recorded (checked only then).
    """
    if num_rows != len(dataset):
        raise ValueError(
            f"the sketches/selection were made from a dataset of {num_rows} rows but dataset has "
            f"{len(dataset)} rows; pass the dataset the sketches were extracted from (or re-run extraction)."
        )
    actual = _fingerprint(dataset)
    if source_fingerprint and actual and source_fingerprint != actual:
        raise ValueError(
            f"the sketches/selection were extracted from a dataset with fingerprint {source_fingerprint!r} but "
            f"dataset has fingerprint {actual!r} (same size, different content or processing); pass the same "
            "dataset the sketches were extracted from, or re-run extraction on this one."
        )


# --------------------------------------------------------------------------- selection


def select_from_sketches(
    sketched: Any,
    n: int | None = None,
    fraction: float | None = None,
    method: str = "skmm",
    seed: int = 0,
    stratify: Any = None,
    **method_kwargs: Any,
):
    """Run a registered selector on a sketch dataset and record where the sketches came from.

    Args:
        sketched: a sketch ``Dataset`` (``skmm_index``, ``skmm_sketch``).
        n: coreset size; or ``fraction`` of the rows (exactly one of the two).
        method: a selector name from :func:`hf_skmm.selection.list_selectors`.
        seed: the selection seed.
        stratify: optional per-row labels ``[N]`` (in source row order) to select within strata.
        **method_kwargs: forwarded to the selector (e.g. ``c_s`` for SkMM).

    Returns:
        A :class:`hf_skmm.selection.SelectionResult` whose ``info`` also holds ``method``, ``seed``,
        ``source_num_rows``, ``source_fingerprint``, ``c_s_achieved``, ``seconds`` and the sketch
        ``provenance``.
    """
    from hf_skmm.selection import achieved_c_s, list_selectors, select

    selectors = list_selectors()
    if method not in selectors:
        raise ValueError(
            f"method={method!r} is not a registered selector; choose one of {sorted(selectors)}."
        )
    matrix = sketch_matrix(sketched)
    num_rows = matrix.shape[0]
    size = resolve_n(n, fraction, num_rows)
    start = time.perf_counter()
    result = select(matrix, size, method=method, seed=seed, stratify=stratify, **method_kwargs)
    seconds = time.perf_counter() - start
    provenance = get_sketch_provenance(sketched)
    info = result.info
    info.setdefault("method", method)
    info.setdefault("seed", seed)
    info["source_num_rows"] = num_rows
    info["source_fingerprint"] = (provenance.get("source") or {}).get("fingerprint")
    info["sketch_fingerprint"] = _fingerprint(sketched)
    info.setdefault("seconds", seconds)
    if info.get("c_s_achieved") is None:
        # uniform weights: the moment an unweighted finetuning run on the coreset sees
        info["c_s_achieved"] = float(achieved_c_s(matrix, result.indices))
    info["provenance"] = json.loads(json.dumps(provenance, default=str))
    return result


def coreset_from_selection(dataset: Any, result: Any):
    """``dataset.select(result.indices)`` plus the columns ``skmm_index`` and ``skmm_weight``."""
    clash = {INDEX_COLUMN, WEIGHT_COLUMN} & set(dataset.column_names)
    if clash:
        raise ValueError(
            f"dataset already has column(s) {sorted(clash)} (is it a coreset already?); remove or rename them "
            "with dataset.remove_columns / rename_column before selecting."
        )
    indices = np.asarray(result.indices, dtype=np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(dataset)):
        raise ValueError(
            f"result.indices span [{indices.min()}, {indices.max()}] but dataset has {len(dataset)} rows; "
            "the selection was made on another dataset."
        )
    from datasets import Value

    coreset = dataset.select(indices.tolist())
    coreset = coreset.add_column(INDEX_COLUMN, indices.tolist(), feature=Value("int64"))
    weights = np.asarray(result.weights, dtype=np.float64)
    return coreset.add_column(WEIGHT_COLUMN, weights.tolist(), feature=Value("float64"))


def select_coreset(
    dataset: Any,
    sketched: Any,
    n: int | None = None,
    fraction: float | None = None,
    method: str = "skmm",
    seed: int = 0,
    stratify_by: str | None = None,
    **method_kwargs: Any,
):
    """Select a coreset of ``dataset`` from its sketched per-example gradients.

    Args:
        dataset: the source ``datasets.Dataset`` (the one ``sketched`` was extracted from).
        sketched: its sketch dataset (``extract_sketches`` output: ``skmm_index``, ``skmm_sketch``).
        n: coreset size; or ``fraction`` of ``len(dataset)`` in (0, 1] (exactly one of the two).
        method: a registered selector (``hf-skmm methods`` lists them).
        seed: the selection seed; the same seed gives the same coreset.
        stratify_by: optional column of ``dataset`` (e.g. the label) to select within its strata.
        **method_kwargs: forwarded to the selector (e.g. ``c_s=0.9`` for SkMM).

    Returns:
        ``(coreset, result)``: ``coreset`` is ``dataset.select(result.indices)`` with the extra columns
        ``skmm_index`` (row in ``dataset``) and ``skmm_weight``; ``result`` the ``SelectionResult``.

    Raises:
        ValueError: ``sketched`` does not come from ``dataset`` (row count or fingerprint), bad ``n`` /
            ``fraction``, unknown ``method`` or ``stratify_by`` column.
    """
    provenance = get_sketch_provenance(sketched)
    source = provenance.get("source") or {}
    if source.get("num_rows") not in (None, len(sketched)):
        raise ValueError(
            f"sketched has {len(sketched)} rows but its provenance says the source had {source['num_rows']}; "
            "pass the complete output of extract_sketches."
        )
    check_sketches_match(dataset, len(sketched), source.get("fingerprint"))
    stratify = None
    if stratify_by is not None:
        if stratify_by not in dataset.column_names:
            raise ValueError(
                f"stratify_by={stratify_by!r} is not a column of dataset; columns: {dataset.column_names}."
            )
        stratify = np.asarray(dataset.with_format("numpy", columns=[stratify_by])[:][stratify_by])
    result = select_from_sketches(
        sketched, n=n, fraction=fraction, method=method, seed=seed, stratify=stratify, **method_kwargs
    )
    result.info["stratify_by"] = stratify_by
    if result.info.get("source_fingerprint") is None:
        result.info["source_fingerprint"] = _fingerprint(dataset)
    return coreset_from_selection(dataset, result), result


# --------------------------------------------------------------------------- saving


def save_coreset(
    coreset: Any, result: Any, path: str | Path, card: Any = None, overwrite: bool = False
) -> Path:
    """Write a coreset directory atomically: ``save_to_disk`` data + ``selection/`` + ``README.md`` card.

    ``datasets.load_from_disk(path)`` reads the coreset back; :func:`load_coreset` also returns the
    selection. Nothing is left at ``path`` if writing fails.
    """
    with atomic_output_dir(path, overwrite=overwrite) as tmp:
        coreset.save_to_disk(str(tmp))
        result.save(str(tmp / SELECTION_DIR))
        if card is not None:
            (tmp / CARD_FILE).write_text(str(card), encoding="utf-8")
    logger.info("saved a coreset of %d rows to %s", len(coreset), path)
    return Path(path)


def load_coreset(path: str | Path):
    """Read back what :func:`save_coreset` wrote: ``(coreset, result)``."""
    from datasets import load_from_disk

    from hf_skmm.selection import SelectionResult

    return load_from_disk(str(path)), SelectionResult.load(str(Path(path) / SELECTION_DIR))


# --------------------------------------------------------------------------- the Hub


def _num_shards(dataset: Any, max_shard_size: int | str | None, num_shards: int | None) -> int:
    # the rule of Dataset.push_to_hub, so the local folder has the files a push would create
    from datasets import config
    from datasets.utils.py_utils import convert_file_size_to_int

    if num_shards is not None:
        return int(num_shards)
    nbytes = dataset._estimate_nbytes() if hasattr(dataset, "_estimate_nbytes") else dataset.data.nbytes
    return int(nbytes / convert_file_size_to_int(max_shard_size or config.MAX_SHARD_SIZE)) + 1


def hub_card(card: Any, coreset: Any, split: str = "train", download_size: int | None = None):
    """``card`` plus the metadata ``datasets`` keeps in a Hub README: ``configs`` (where the split's
    parquet files are) and ``dataset_info`` (features, split sizes).
    """
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    out = DatasetCard(str(card))
    nbytes = coreset._estimate_nbytes() if hasattr(coreset, "_estimate_nbytes") else coreset.data.nbytes
    splits = SplitDict()
    splits.add(SplitInfo(name=split, num_bytes=nbytes, num_examples=len(coreset)))
    info = DatasetInfo(
        config_name="default",
        features=coreset.features,
        splits=splits,
        download_size=download_size or 0,
        dataset_size=nbytes,
    )
    info.size_in_bytes = info.download_size + info.dataset_size
    DatasetInfosDict({"default": info}).to_dataset_card_data(out.data)
    MetadataConfigs(
        {"default": {"data_files": [{"split": split, "path": f"data/{split}-*"}]}}
    ).to_dataset_card_data(out.data)
    return DatasetCard(f"---\n{out.data.to_yaml()}\n---\n{out.text}")


def write_hub_folder(
    coreset: Any,
    card: Any,
    folder: str | Path,
    split: str = "train",
    max_shard_size: int | str | None = None,
    num_shards: int | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write locally the files :func:`push_coreset_to_hub` uploads: ``data/{split}-XXXXX-of-YYYYY.parquet``
    (named and sharded as ``Dataset.push_to_hub`` names them) and ``README.md`` (the card with the
    ``configs`` / ``dataset_info`` metadata). ``datasets.load_dataset(folder)`` reads it like the Hub repo
    (``datasets`` caches a local folder under its *name*: pass ``cache_dir=`` or
    ``download_mode="force_redownload"`` when reading a re-written folder, or you may get the old rows).

    Returns:
        The written files, relative to ``folder``.
    """
    shards = _num_shards(coreset, max_shard_size, num_shards)
    written: list[Path] = []
    with atomic_output_dir(folder, overwrite=overwrite, name="folder") as tmp:
        (tmp / "data").mkdir()
        size = 0
        for index in range(shards):
            rel = Path("data") / f"{split}-{index:05d}-of-{shards:05d}.parquet"
            coreset.shard(num_shards=shards, index=index, contiguous=True).to_parquet(str(tmp / rel))
            size += (tmp / rel).stat().st_size
            written.append(rel)
        (tmp / CARD_FILE).write_text(
            str(hub_card(card, coreset, split, download_size=size)), encoding="utf-8"
        )
        written.append(Path(CARD_FILE))
    return written


def push_coreset_to_hub(
    coreset: Any,
    card: Any,
    repo_id: str,
    private: bool = True,
    token: str | None = None,
    split: str = "train",
    commit_message: str | None = None,
    **push_kwargs: Any,
):
    """Push a coreset and its card to a Hub dataset repository (private by default).

    The card goes first, then ``Dataset.push_to_hub`` uploads the parquet shards and adds its
    ``configs`` / ``dataset_info`` metadata to that README, so the repository ends up with the
    files :func:`write_hub_folder` writes locally.

    Args:
        coreset: the coreset ``Dataset``.
        card: its ``DatasetCard`` (:func:`hf_skmm.integrations.card.build_card`).
        repo_id: ``"user/name"``.
        private: create the repository private (ignored when it exists).
        token: a Hub token (default: the logged-in one).
        split: the split name on the Hub.
        commit_message: message of the data commit.
        **push_kwargs: forwarded to ``Dataset.push_to_hub`` (``max_shard_size``, ``num_shards``, ...).

    Returns:
        The ``CommitInfo`` of the data commit.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    hub_card(card, coreset, split).push_to_hub(
        repo_id, token=token, repo_type="dataset", commit_message="Add hf_skmm coreset card"
    )
    return coreset.push_to_hub(
        repo_id,
        split=split,
        private=private,
        token=token,
        commit_message=commit_message or f"Upload hf_skmm coreset ({len(coreset)} rows)",
        **push_kwargs,
    )

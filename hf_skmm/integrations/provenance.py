"""Provenance of a sketch dataset: which source dataset, model, adapter and configs produced it.

Stored as JSON in ``Dataset.info.description`` under the key ``"hf_skmm"``, because
``DatasetInfo`` is written by ``save_to_disk`` (``dataset_info.json``), restored by ``load_from_disk``,
pushed with ``push_to_hub`` and kept by ``select`` / ``filter`` / ``concatenate_datasets``. The
record lets downstream steps (the CLI, :func:`hf_skmm.select_coreset`) refuse a sketch dataset that was
made from another source dataset.

Record layout (all JSON-able)::

    {"format": 1, "hf_skmm_version": "0.1.0", "fingerprint": "<extraction fingerprint>",
     "source": {"fingerprint": ..., "num_rows": ..., "column_names": [...]},
     "model": {... model_identity ...}, "adapter": {... peft config ...} | null,
     "gradient_config": {...}, "sketch_config": {...}, "sketch_dim": m, "preprocessing": {...}}
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger(__name__)

PROVENANCE_KEY = "hf_skmm"
PROVENANCE_FORMAT = 1


def attach_provenance(dataset: Any, record: dict[str, Any]) -> Any:
    """Store ``record`` in ``dataset.info.description`` (in place) and return ``dataset``."""
    dataset.info.description = json.dumps({PROVENANCE_KEY: record}, sort_keys=True)
    return dataset


def get_provenance(sketched: Any) -> dict[str, Any]:
    """The provenance record of a sketch dataset made by :func:`hf_skmm.extract_sketches`.

    Args:
        sketched: the ``datasets.Dataset`` returned by ``extract_sketches`` (or saved and re-loaded).

    Returns:
        The record described in this module's docstring.

    Raises:
        ValueError: if ``sketched`` carries no hf_skmm provenance (not made by ``extract_sketches``).
    """
    description = getattr(getattr(sketched, "info", None), "description", None) or ""
    try:
        payload = json.loads(description)
    except (TypeError, ValueError):
        payload = None
    if not isinstance(payload, dict) or not isinstance(payload.get(PROVENANCE_KEY), dict):
        raise ValueError(
            "sketched has no hf_skmm provenance in its info.description "
            f"(got {description[:80]!r}); pass the Dataset returned by hf_skmm.extract_sketches "
            "(or one saved with save_to_disk and re-loaded with load_from_disk)."
        )
    return payload[PROVENANCE_KEY]


def check_source(sketched: Any, dataset: Any, strict: bool = True) -> dict[str, Any]:
    """Check that ``sketched`` was extracted from ``dataset``; return the provenance record.

    The row count must match. The dataset fingerprint should match too, but ``datasets`` gives a
    dataset re-loaded from disk (or rebuilt by another code path) a new fingerprint even when its rows
    are identical, so a fingerprint mismatch raises only when ``strict`` (the default) and logs a
    warning otherwise.

    Raises:
        ValueError: on a row-count mismatch, or a fingerprint mismatch when ``strict``.
    """
    record = get_provenance(sketched)
    source = record.get("source", {})
    if source.get("num_rows") != len(dataset) or len(sketched) != len(dataset):
        raise ValueError(
            f"sketched was made from a dataset of {source.get('num_rows')} rows ({len(sketched)} sketch rows) "
            f"but dataset has {len(dataset)} rows; re-run extract_sketches on this dataset."
        )
    fingerprint = getattr(dataset, "_fingerprint", None)
    if source.get("fingerprint") != fingerprint:
        message = (
            f"sketched was made from a dataset with fingerprint {source.get('fingerprint')!r} but dataset has "
            f"fingerprint {fingerprint!r}: it may be another dataset (or the same rows re-loaded); re-run "
            "extract_sketches on this dataset, or pass strict=False if you know the rows are the same."
        )
        if strict:
            raise ValueError(message)
        logger.warning(message)
    return record

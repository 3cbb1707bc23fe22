"""Loading datasets and models from local paths (the CLI's inputs), with errors that say what to pass.

A dataset path is one of: a ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` directory, a local
``.csv`` / ``.json`` / ``.jsonl`` / ``.parquet`` file, or a folder of such files (e.g. a Hub repository
cloned locally, as written by :func:`hf_skmm.integrations.coreset.write_hub_folder`).
A model path is a ``save_pretrained`` directory; a peft adapter is either given on its own (its
``adapter_config.json`` names the base model) or on top of ``model_path`` with ``adapter_path``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hf_skmm._io import atomic_dir

logger = logging.getLogger(__name__)

# file suffix -> datasets packaged builder
_FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _is_saved_dataset_dir(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _pick_split(dataset_dict: Any, split: str | None, path: str) -> Any:
    splits = list(dataset_dict.keys())
    if split is None:
        if len(splits) == 1:
            return dataset_dict[splits[0]]
        if "train" in splits:
            return dataset_dict["train"]
        raise ValueError(
            f"dataset_path={path!r} holds several splits {splits} and none is 'train'; "
            "pass split=<one of them> (--split on the command line)."
        )
    if split not in splits:
        raise ValueError(f"split={split!r} is not in dataset_path={path!r}; available splits: {splits}.")
    return dataset_dict[split]


def load_dataset_from_path(path: str | Path, split: str | None = None):
    """Load a :class:`datasets.Dataset` from a local path.

    Args:
        path: a ``save_to_disk`` directory (``Dataset`` or ``DatasetDict``), a ``.csv`` / ``.json`` /
            ``.jsonl`` / ``.parquet`` file, or a folder of data files that ``datasets.load_dataset`` reads.
        split: which split to use when the path holds several; defaults to the only split, else ``"train"``.

    Returns:
        A ``datasets.Dataset``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file type is not supported, or ``split`` is not available.
    """
    import datasets

    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(
            f"dataset_path={str(path)!r} does not exist; pass a save_to_disk directory or a local "
            f"{'/'.join(sorted(_FILE_BUILDERS))} file."
        )
    if file.is_dir() and _is_saved_dataset_dir(file):
        loaded = datasets.load_from_disk(str(file))
        if isinstance(loaded, datasets.DatasetDict):
            return _pick_split(loaded, split, str(path))
        if split is not None and loaded.split is not None and str(loaded.split) != split:
            logger.warning(
                "dataset_path=%r is a single split %r; ignoring split=%r", path, loaded.split, split
            )
        return loaded
    if file.is_file():
        builder = _FILE_BUILDERS.get(file.suffix.lower())
        if builder is None:
            raise ValueError(
                f"dataset_path={str(path)!r} has an unsupported suffix {file.suffix!r}; pass a save_to_disk "
                f"directory or a file ending in one of {sorted(_FILE_BUILDERS)}."
            )
        return datasets.load_dataset(builder, data_files=str(file), split=split or "train")
    # a folder of data files (e.g. a local copy of a Hub dataset repository)
    try:
        loaded = datasets.load_dataset(str(file))
    except Exception as err:  # datasets raises several types here; re-raise with the fix
        raise ValueError(
            f"dataset_path={str(path)!r} is a directory but neither a save_to_disk directory nor a folder "
            f"of data files datasets can read ({type(err).__name__}: {err})."
        ) from err
    return _pick_split(loaded, split, str(path))


def _model_class_for(config: Any):
    """The transformers class named in ``config.architectures`` (what ``save_pretrained`` wrote)."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return transformers.AutoModel


def load_model_from_path(
    model_path: str | Path, adapter_path: str | Path | None = None, **from_pretrained_kwargs: Any
):
    """Load a ``save_pretrained`` model (optionally with a peft adapter) and its tokenizer from disk.

    The model class is the one recorded in ``config.json`` (``architectures``), so a saved
    ``BertForSequenceClassification`` comes back with its head. When ``model_path`` itself is a peft
    adapter directory (``adapter_config.json``), the base model is the one it names.

    Args:
        model_path: a ``save_pretrained`` directory of a transformers model or of a peft adapter.
        adapter_path: optional peft adapter directory applied on top of ``model_path``.
        **from_pretrained_kwargs: forwarded to ``from_pretrained`` (e.g. ``torch_dtype``).

    Returns:
        ``(model, tokenizer, identity)``: the model in eval mode, its tokenizer (``None`` when no tokenizer
        files were saved) and a JSON-able dict naming the model and adapter (for provenance and cards).
    """
    from transformers import AutoConfig, AutoTokenizer

    model_dir = Path(model_path)
    if not model_dir.is_dir():
        raise FileNotFoundError(
            f"model_path={str(model_path)!r} is not a directory; pass a directory written by save_pretrained."
        )
    adapter_dir = Path(adapter_path) if adapter_path is not None else None
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"adapter_path={str(adapter_path)!r} has no adapter_config.json; pass a directory written by "
            "a peft model's save_pretrained."
        )
    if (model_dir / "adapter_config.json").is_file():
        if adapter_dir is not None:
            raise ValueError(
                f"model_path={str(model_path)!r} is itself a peft adapter and adapter_path={str(adapter_path)!r} "
                "was given too; pass the base model as model_path and the adapter as adapter_path."
            )
        adapter_dir = model_dir
        base = json.loads((model_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base or not Path(base).is_dir():
            raise FileNotFoundError(
                f"the adapter at model_path={str(model_path)!r} names base model {base!r}, which is not a local "
                "directory; pass model_path=<base model dir> and adapter_path=<adapter dir>."
            )
        model_dir = Path(base)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"model_path={str(model_dir)!r} has no config.json; pass a directory written by save_pretrained."
        )
    config = AutoConfig.from_pretrained(str(model_dir))
    model = _model_class_for(config).from_pretrained(str(model_dir), **from_pretrained_kwargs)
    identity: dict[str, Any] = {
        "model": str(model_dir),
        "model_class": type(model).__name__,
        "model_revision": getattr(config, "_commit_hash", None),
        "adapter": None,
    }
    if adapter_dir is not None:
        from peft import PeftModel

        # is_trainable: the adapter's parameters must require grad for params="lora" gradients
        # (peft loads adapters frozen, for inference, by default); eval() below still disables dropout
        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)
        identity["adapter"] = str(adapter_dir)
        identity["adapter_config"] = json.loads((adapter_dir / "adapter_config.json").read_text())
    model.eval()
    tokenizer = None
    for candidate in [d for d in (adapter_dir, model_dir) if d is not None]:
        if (candidate / "tokenizer_config.json").is_file() or (candidate / "tokenizer.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(str(candidate))
            break
    return model, tokenizer, identity


def check_output_dir(path: str | Path, overwrite: bool = False, name: str = "output_dir") -> Path:
    """Fail early (before any work) when ``path`` exists and ``overwrite`` is not set."""
    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"{name}={str(path)!r} already exists; pass a new path or overwrite=True (--overwrite) to replace it."
        )
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{name}={str(path)!r} exists and is not a directory; pass a directory path.")
    return out


@contextlib.contextmanager
def atomic_output_dir(path: str | Path, overwrite: bool = False, name: str = "output_dir") -> Iterator[Path]:
    """Write a directory atomically: yield a temporary sibling, ``os.replace`` it onto ``path`` on success.

    On any exception the temporary directory is removed, so a failed run leaves nothing at ``path``
    (and an existing ``path`` untouched). With ``overwrite=True`` an existing directory is replaced.
    """
    out = check_output_dir(path, overwrite=overwrite, name=name)
    with atomic_dir(out) as tmp:
        yield tmp

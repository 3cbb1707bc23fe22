"""Fingerprints that key the extraction cache: who made a sketch column, from what, and how.

``datasets`` keys a ``Dataset.map`` cache on a fingerprint of the function. A closure holding a model
either gets hashed through every weight (slow, and the hash changes with the object's pickling) or
falls back to a random fingerprint (the cache is never reused). So :func:`extraction_fingerprint`
builds the fingerprint explicitly from the ingredients that determine the result:

* the source dataset's ``_fingerprint`` (``datasets`` already tracks every transform applied to it),
* the model identity (:func:`model_identity`),
* the adapter config(s) of a peft model,
* the gradient and sketch configs (which include the seed),
* the preprocessing that changes model inputs (tokenizer, collator, text / label column, max length),
* the ``hf_skmm`` version (a new release may change the numbers).

Model identity policy (documented here because it trades safety for speed):

* always: the model class, ``name_or_path``, the hub revision (``config._commit_hash``) when known,
  the config (minus bookkeeping keys) and the name, shape and dtype of every tensor in the state dict;
* trainable tensors (``requires_grad``, e.g. a peft adapter or a fresh head) are hashed in full: they
  are small and are what a finetuning loop changes;
* frozen tensors are hashed in full while their total size is at most ``full_hash_max_bytes``
  (1 GiB by default: BERT-base, GPT-2, MiniLM), and by a fixed strided sample of each tensor
  (``SAMPLE_SIZE`` values + its first and last values) above that, so a 7B model costs well under a
  second instead of ~10 s. The sample catches re-loaded, finetuned or re-initialised weights (which change
  everywhere); it can miss an edit of a single frozen entry of a huge model: pass
  ``model_hash="full"`` when that matters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

MODEL_HASH_POLICIES = ("auto", "full", "sample")
DEFAULT_FULL_HASH_MAX_BYTES = 1 << 30
SAMPLE_SIZE = 4096
# keys of a transformers config that say nothing about the weights or the computation
_CONFIG_BOOKKEEPING = ("transformers_version", "_commit_hash", "_name_or_path", "name_or_path")


def to_jsonable(obj: Any) -> Any:
    """A JSON-able view of a config object: dataclass, ``to_dict()`` object, mapping, sequence or scalar."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [to_jsonable(v) for v in obj]
        return sorted(items, key=repr) if isinstance(obj, (set, frozenset)) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.dtype):
        return str(obj)
    if hasattr(obj, "value") and isinstance(getattr(obj, "value", None), (str, int)):  # enums
        return obj.value
    return repr(obj)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj`` (same on every machine and Python version)."""
    payload = json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    flat = t.detach().reshape(-1).contiguous().cpu()
    return memoryview(flat.view(torch.uint8).numpy())


def _update_with_tensor(hasher: Any, t: torch.Tensor, sample: bool) -> None:
    if not sample or t.numel() <= 3 * SAMPLE_SIZE:
        hasher.update(_tensor_bytes(t))
        return
    flat = t.detach().reshape(-1)
    step = flat.numel() // SAMPLE_SIZE
    picks = torch.cat([flat[:SAMPLE_SIZE], flat[::step][:SAMPLE_SIZE], flat[-SAMPLE_SIZE:]])
    hasher.update(_tensor_bytes(picks))


def _base_model(model: torch.nn.Module) -> torch.nn.Module:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def adapter_config(model: torch.nn.Module) -> dict | None:
    """The peft adapter config(s) of ``model`` as JSON-able dicts, with the active adapter; ``None`` if no peft."""
    peft_config = getattr(model, "peft_config", None)
    if not isinstance(peft_config, Mapping) or not peft_config:
        return None
    return {
        "active_adapter": to_jsonable(getattr(model, "active_adapter", None)),
        "adapters": {name: to_jsonable(cfg) for name, cfg in peft_config.items()},
    }


def model_identity(
    model: torch.nn.Module, model_hash: str = "auto", full_hash_max_bytes: int = DEFAULT_FULL_HASH_MAX_BYTES
) -> dict[str, Any]:
    """Describe ``model`` for the extraction fingerprint and the provenance record (policy in the module doc).

    Args:
        model: a ``transformers`` / peft model or any ``torch.nn.Module``.
        model_hash: ``"auto"`` (full hash up to ``full_hash_max_bytes`` of frozen weights, sampled above),
            ``"full"`` (always every byte) or ``"sample"`` (always sample the frozen weights).
        full_hash_max_bytes: size limit of the frozen weights hashed in full under ``"auto"``.

    Returns:
        A JSON-able dict: ``class``, ``name_or_path``, ``revision``, ``config_hash``, ``num_parameters``,
        ``num_trainable``, ``weights_hash``, ``hash_policy``.
    """
    if model_hash not in MODEL_HASH_POLICIES:
        raise ValueError(
            f"model_hash={model_hash!r} is not a known policy; use one of {list(MODEL_HASH_POLICIES)}."
        )
    base = _base_model(model)
    config = getattr(base, "config", None)
    config_dict = to_jsonable(config) if config is not None else None
    if isinstance(config_dict, dict):
        config_dict = {k: v for k, v in config_dict.items() if k not in _CONFIG_BOOKKEEPING}
    name_or_path = getattr(config, "_name_or_path", None) or getattr(base, "name_or_path", None) or ""

    params = dict(model.named_parameters())
    trainable = {name for name, p in params.items() if p.requires_grad}
    state = model.state_dict()
    frozen_bytes = sum(t.numel() * t.element_size() for n, t in state.items() if n not in trainable)
    sample_frozen = model_hash == "sample" or (model_hash == "auto" and frozen_bytes > full_hash_max_bytes)

    hasher = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        hasher.update(f"{name}|{tuple(t.shape)}|{t.dtype}|{name in trainable}".encode())
        _update_with_tensor(hasher, t, sample=sample_frozen and name not in trainable)
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "base_class": f"{type(base).__module__}.{type(base).__qualname__}",
        "name_or_path": str(name_or_path),
        "revision": getattr(config, "_commit_hash", None),
        "config_hash": stable_hash(config_dict) if config_dict is not None else None,
        "num_parameters": int(sum(p.numel() for p in params.values())),
        "num_trainable": int(sum(params[n].numel() for n in trainable)),
        "weights_hash": hasher.hexdigest()[:32],
        "hash_policy": "sample" if sample_frozen else "full",
    }


def extraction_fingerprint(ingredients: Mapping[str, Any]) -> str:
    """The ``new_fingerprint`` of an extraction: a 32-hex-digit hash of all its ``ingredients``.

    ``ingredients`` must hold everything the sketch values depend on (see the module doc); it is
    hashed through its canonical JSON, so key order does not matter.
    """
    return stable_hash(dict(ingredients), length=32)

"""hf_skmm: Sketchy Moment Matching (SkMM) data selection for the Hugging Face stack.

Data flow (imports point downward only)::

    model + Dataset --extract--> sketches [N, m] --select--> SelectionResult --emit--> coreset Dataset
                                                                                   --train--> Trainer recipe

``import hf_skmm`` is cheap: the public names below are resolved lazily, so the heavy
libraries (transformers, datasets, peft, accelerate) load only when a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # sketch layer (numpy / torch only)
    "SketchConfig": "hf_skmm.sketch",
    "make_sketch": "hf_skmm.sketch",
    # selection layer (numpy / scipy / torch only)
    "select": "hf_skmm.selection",
    "SelectionResult": "hf_skmm.selection",
    "list_selectors": "hf_skmm.selection",
    "register_selector": "hf_skmm.selection",
    "achieved_c_s": "hf_skmm.selection",
    # gradient layer (torch + peft)
    "GradientConfig": "hf_skmm.gradients",
    "GradientSketcher": "hf_skmm.gradients",
    # Hugging Face integration (datasets, accelerate, transformers)
    "extract_sketches": "hf_skmm.integrations.extract",
    "select_coreset": "hf_skmm.integrations.coreset",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_skmm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from hf_skmm.gradients import GradientConfig, GradientSketcher
    from hf_skmm.integrations.coreset import select_coreset
    from hf_skmm.integrations.extract import extract_sketches
    from hf_skmm.selection import SelectionResult, achieved_c_s, list_selectors, register_selector, select
    from hf_skmm.sketch import SketchConfig, make_sketch

"""Per-example gradients of a model, sketched on the fly (torch + peft only; no datasets, no Trainer).

- :class:`GradientConfig`: what is differentiated (``params``), against which ``target``, which engine.
- :class:`GradientSketcher`: ``sketcher(batch, row_indices) -> [b, m]`` sketched per-example gradients.
- Functional core: :func:`per_example_grads`, :func:`sketch_batch`, :func:`build_layout_sketch`,
  :func:`select_parameter_names`, :func:`build_layout`.
"""

from hf_skmm.gradients.config import GradientConfig
from hf_skmm.gradients.losses import detect_task, per_example_objective
from hf_skmm.gradients.params import ParamBlock, build_layout, find_blocks, find_head, select_parameter_names
from hf_skmm.gradients.sketcher import (
    GradientSketcher,
    build_layout_sketch,
    per_example_grads,
    prepared_model,
    sketch_batch,
)

__all__ = [
    "GradientConfig",
    "GradientSketcher",
    "ParamBlock",
    "build_layout",
    "build_layout_sketch",
    "detect_task",
    "find_blocks",
    "find_head",
    "per_example_grads",
    "per_example_objective",
    "prepared_model",
    "select_parameter_names",
    "sketch_batch",
]

"""Generic engine: per-example gradients of any parameters with ``torch.func``.

``g_i = ∇_θ f(θ; x_i)`` is computed by ``vmap(grad(f))`` over the examples, with the selected
parameters passed to ``functional_call`` as the differentiated argument and every other parameter and
buffer as detached constants (so the model's own ``requires_grad`` flags play no part). Each example is
evaluated as a batch of one, exactly as a per-example ``loss.backward()`` loop would.

Some models (transformers' attention-mask helpers, which test ``mask.all()``) have data-dependent Python
control flow that ``vmap`` cannot trace; ``vmap="auto"`` then falls back, once per sketcher, to a loop of
``torch.func.grad`` over the examples (same function, same result, b forward/backward passes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from hf_skmm.gradients.params import ParamBlock

logger = logging.getLogger(__name__)

# f(logits, example_batch, example_labels) -> per-example objective [1]
Objective = Callable[[torch.Tensor, Mapping[str, Any], Any], torch.Tensor]


def _split_batch(inputs: Mapping[str, Any], batch_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tensors with a leading batch dimension (mapped by vmap) vs everything else (constants)."""
    mapped, const = {}, {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size:
            mapped[key] = value
        else:
            const[key] = value
    return mapped, const


def generic_per_example_grads(
    model: nn.Module,
    layout: Sequence[ParamBlock],
    inputs: Mapping[str, Any],
    labels: torch.Tensor | None,
    objective: Objective,
    batch_size: int,
    use_vmap: bool = True,
    chunk_size: int = 0,
) -> torch.Tensor:
    """Per-example gradients ``[b, r]`` (float32, layout order) via ``torch.func``.

    Args:
        model: the model (in eval mode; its parameters are not modified).
        layout: the selected parameter blocks.
        inputs: model keyword arguments for the batch (no labels).
        labels: per-example labels ``[b, ...]`` or ``None``.
        objective: maps (logits, batch of one, labels of one) to f ``[1]``.
        batch_size: b.
        use_vmap: vmap over the examples (else a Python loop over them).
        chunk_size: examples per vmap call (0: all).

    Raises:
        RuntimeError: from ``vmap`` when the model cannot be vmapped (the caller may retry without).
    """
    from torch.func import functional_call, grad, vmap

    names = [block.name for block in layout]
    # shared (tied) tensors are listed once, under their first name; functional_call re-ties the rest
    consts = {n: p.detach() for n, p in model.named_parameters()}
    consts.update({n: b.detach() for n, b in model.named_buffers()})
    selected = {n: consts.pop(n) for n in names}
    mapped, const_inputs = _split_batch(inputs, batch_size)

    def f(params: dict[str, torch.Tensor], example: dict[str, torch.Tensor], label: Any) -> torch.Tensor:
        one = {k: v.unsqueeze(0) for k, v in example.items()}
        one.update(const_inputs)
        output = functional_call(model, (params, consts), args=(), kwargs=one, tie_weights=True)
        lab = None if label is None else label.unsqueeze(0)
        return objective(output, one, lab).sum()

    grad_f = grad(f)

    def flatten(g: dict[str, torch.Tensor], b: int) -> torch.Tensor:
        return torch.cat([g[n].reshape(b, -1).float() for n in names], dim=1)

    if use_vmap:
        step = chunk_size or batch_size
        chunks = []
        for start in range(0, batch_size, step):
            sl = slice(start, start + step)
            ex = {k: v[sl] for k, v in mapped.items()}
            lab = None if labels is None else labels[sl]
            g = vmap(grad_f, in_dims=(None, 0, None if lab is None else 0))(selected, ex, lab)
            chunks.append(flatten(g, next(iter(g.values())).shape[0]))
        return torch.cat(chunks, dim=0)
    rows = []
    for i in range(batch_size):
        ex = {k: v[i] for k, v in mapped.items()}
        g = grad_f(selected, ex, None if labels is None else labels[i])
        rows.append(flatten({k: v.unsqueeze(0) for k, v in g.items()}, 1))
    return torch.cat(rows, dim=0)

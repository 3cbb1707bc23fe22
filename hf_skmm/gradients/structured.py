"""Structured engine: per-example gradients of linear layers from one forward and one backward.

For a linear layer ``y_t = W h_t + b`` applied at positions t of example i, the gradient of a loss summed
over examples, restricted to example i, is

    ∇_W f_i = Σ_t δ_{i,t} h_{i,t}ᵀ,      ∇_b f_i = Σ_t δ_{i,t},      δ_{i,t} = ∂(Σ_j f_j) / ∂y_{i,t}

(per-example terms separate because example j's activations never depend on example i in eval mode).
A forward hook keeps the layer input ``h`` and output ``y``; ``torch.autograd.grad`` of the summed
objective with respect to every hooked ``y`` gives δ without ever forming the weight gradients. For a
head on a pooled vector (T = 1) this is the closed form ``(softmax(z) - onehot(y)) ⊗ h``. GPT-2's
``Conv1D`` (``y = h W + b``, W ``[d_in, d_out]``) has ``∇_W f_i = Σ_t h_{i,t} δ_{i,t}ᵀ``.

Only the selected parameters require grad during the pass, so autograd builds the graph from the
lowest selected layer upwards (for a head: almost nothing beyond a plain forward).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from hf_skmm.gradients.params import ParamBlock

# (a, b) with ∇W_i = Σ_t a_{i,t} b_{i,t}ᵀ (W's row side first), both float32 [b, T, d]
Factors = tuple[torch.Tensor, torch.Tensor]


def supports_structured(layout: Sequence[ParamBlock]) -> bool:
    """True when every block is the weight / bias of an unshared ``nn.Linear`` / ``Conv1D``."""
    return all(block.role in ("weight", "bias") for block in layout)


def _as_btd(x: torch.Tensor, batch_size: int, module_name: str) -> torch.Tensor:
    if x.dim() < 2 or x.shape[0] != batch_size:
        raise RuntimeError(
            f"structured engine: layer {module_name!r} saw a tensor of shape {tuple(x.shape)} whose first "
            f"dimension is not the batch size {batch_size} (the model flattens the batch); use "
            "GradientConfig.engine='generic'."
        )
    return x.reshape(batch_size, -1, x.shape[-1]).float()


def capture_factors(
    model: nn.Module,
    layout: Sequence[ParamBlock],
    forward: Callable[[], torch.Tensor],
    batch_size: int,
) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Run ``forward`` (returns the per-example objective ``[b]``) with hooks; return ``{module: [(h, δ)]}``.

    One ``(h, δ)`` pair per call of the module (a layer called twice contributes both calls), each float32
    ``[b, T, d]``. Layers the objective does not reach get ``δ = 0``.
    """
    modules = dict(model.named_modules())
    names = list(dict.fromkeys(block.module_name for block in layout))
    records: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in names}

    def make_hook(name: str):
        def hook(
            module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: torch.Tensor
        ) -> None:
            x = args[0] if args else next(v for v in kwargs.values() if isinstance(v, torch.Tensor))
            records[name].append((x.detach(), output))

        return hook

    handles = [modules[n].register_forward_hook(make_hook(n), with_kwargs=True) for n in names]
    try:
        objective = forward()
    finally:
        for handle in handles:
            handle.remove()
    outputs = [(n, k) for n in names for k in range(len(records[n]))]
    tensors = [records[n][k][1] for n, k in outputs]
    needs = [t.requires_grad for t in tensors]
    diff = [t for t, r in zip(tensors, needs) if r]
    grads = (
        torch.autograd.grad(objective.sum(), diff, allow_unused=True, materialize_grads=True) if diff else ()
    )
    grad_iter = iter(grads)
    factors: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in names}
    for (name, k), t, r in zip(outputs, tensors, needs):
        h = records[name][k][0]
        delta = next(grad_iter) if r else torch.zeros_like(t)
        factors[name].append((_as_btd(h, batch_size, name), _as_btd(delta.detach(), batch_size, name)))
    return factors


def block_factors(block: ParamBlock, calls: list[tuple[torch.Tensor, torch.Tensor]]) -> Factors:
    """``(a, b)`` with ``∇W_i = Σ_t a_t b_tᵀ`` for a weight block (W's rows first), calls concatenated over T."""
    h = torch.cat([c[0] for c in calls], dim=1)
    delta = torch.cat([c[1] for c in calls], dim=1)
    return (delta, h) if block.layer == "linear" else (h, delta)


def block_gradient(block: ParamBlock, calls: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The per-example gradient of one block, float32 ``[b, numel]`` (row-major flatten of the parameter)."""
    if not calls:
        raise RuntimeError(
            f"structured engine: layer {block.module_name!r} was not called in the forward pass, so the "
            f"gradient of {block.name!r} cannot be captured; drop it from the selection or use engine='generic'."
        )
    if block.role == "bias":
        delta = torch.cat([c[1] for c in calls], dim=1)
        return delta.sum(1)
    a, b = block_factors(block, calls)
    return torch.einsum("bti,btj->bij", a, b).reshape(a.shape[0], -1)


def structured_per_example_grads(
    layout: Sequence[ParamBlock], factors: Mapping[str, list[tuple[torch.Tensor, torch.Tensor]]]
) -> torch.Tensor:
    """Concatenate every block's per-example gradient in layout order: float32 ``[b, r]``."""
    return torch.cat([block_gradient(block, factors[block.module_name]) for block in layout], dim=1)

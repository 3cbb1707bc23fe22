"""Generic engine: per-example gradients of any parameters with ``torch.func``.

``g_i = ∇_θ f(θ; x_i)`` is computed by ``vmap(grad(f))`` over the examples, with the selected
parameters passed to ``functional_call`` as the differentiated argument and every other parameter and
buffer as detached constants (so the model's own ``requires_grad`` flags play no part). Each example is
evaluated as a batch of one, exactly as a per-example ``loss.backward()`` loop would.

transformers' attention-mask helpers test ``mask.all()`` (data-dependent Python control flow that
``vmap`` cannot trace) when given the usual 2-D ``attention_mask``, but take a 4-D boolean mask
``[1, 1, T, T]`` as is. :func:`choose_mask_layout` therefore tries, on one example, a key-padding 4-D mask
("bidirectional") and the same mask intersected with the causal triangle ("causal"), and keeps the one
whose logits equal the model's own on the real tokens (exactly one must match); the objective still sees
the 2-D mask. When no layout is verified, or ``vmap`` fails anyway, ``vmap="auto"`` falls back, once per
sketcher, to a loop of ``torch.func.grad`` over the examples (same function, same result, b passes).
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


MASK_LAYOUTS = ("bidirectional", "causal")


def mask_4d(mask: torch.Tensor, layout: str) -> torch.Tensor:
    """``[b, T]`` attention mask -> boolean ``[b, 1, T, T]`` (True = may attend).

    Key padding, intersected with the lower triangle for ``layout="causal"``; the diagonal is always
    allowed so a padded query never has an all-masked row (which would give NaN through softmax). Padded
    queries' outputs are ignored by the objective either way.
    """
    t = mask.shape[-1]
    keep = mask.bool()[:, None, None, :].expand(-1, 1, t, t)
    if layout == "causal":
        keep = keep & torch.ones(t, t, dtype=torch.bool, device=mask.device).tril()
    return keep | torch.eye(t, dtype=torch.bool, device=mask.device)


def choose_mask_layout(model: nn.Module, inputs: Mapping[str, Any], batch_size: int) -> str | None:
    """The 4-D mask layout that reproduces the model's logits with its 2-D ``attention_mask`` (or ``None``).

    Checked on the example with the most padding among those with at least two real tokens, comparing
    logits at real positions; ``None`` when the batch has no 2-D mask, the model rejects 4-D masks, or not
    exactly one layout matches.
    """
    from hf_skmm.gradients.losses import logits_of

    mask = inputs.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] != batch_size:
        return None
    lengths = mask.sum(1)
    candidates = (lengths >= 2).nonzero().flatten()
    if len(candidates) == 0:
        return None
    i = int(candidates[lengths[candidates].argmin()])
    one = {
        k: (v[i : i + 1] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch_size else v)
        for k, v in inputs.items()
    }
    matches = []
    try:
        with torch.no_grad():
            ref = logits_of(model(**one)).float()
            real = one["attention_mask"][0].bool()
            for layout in MASK_LAYOUTS:
                out = logits_of(
                    model(**{**one, "attention_mask": mask_4d(one["attention_mask"], layout)})
                ).float()
                if out.shape != ref.shape:
                    continue
                a, b = (
                    (ref[0, real], out[0, real])
                    if ref.dim() == 3 and ref.shape[1] == real.numel()
                    else (ref, out)
                )
                if torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max().clamp_min(1e-12))):
                    matches.append(layout)
    except Exception as err:  # a model that does not take 4-D masks: fall back to the per-example loop
        logger.debug("4-D attention mask not accepted (%s)", err)
        return None
    return matches[0] if len(matches) == 1 else None


def generic_per_example_grads(
    model: nn.Module,
    layout: Sequence[ParamBlock],
    inputs: Mapping[str, Any],
    labels: torch.Tensor | None,
    objective: Objective,
    batch_size: int,
    use_vmap: bool = True,
    mask_layout: str | None = None,
) -> torch.Tensor:
    """Per-example gradients ``[b, r]`` (float32, layout order) via ``torch.func``.

    Args:
        model: the model (in eval mode; its parameters are not modified).
        layout: the selected parameter blocks.
        inputs: model keyword arguments for the batch (no labels).
        labels: per-example labels ``[b, ...]`` or ``None``.
        objective: maps (logits, batch of one, labels of one) to f ``[1]``.
        batch_size: b.
        use_vmap: vmap over the examples (else a Python loop over them); callers bound memory by calling
            this on chunks of the batch.
        mask_layout: pass the model a 4-D ``attention_mask`` of this layout (:func:`mask_4d`) instead of
            the 2-D one (from :func:`choose_mask_layout`; lets ``vmap`` trace transformers models).

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
        kwargs = one
        if mask_layout is not None and "attention_mask" in one:
            kwargs = {**one, "attention_mask": mask_4d(one["attention_mask"], mask_layout)}
        output = functional_call(model, (params, consts), args=(), kwargs=kwargs, tie_weights=True)
        lab = None if label is None else label.unsqueeze(0)
        return objective(output, one, lab).sum()

    grad_f = grad(f)

    def flatten(g: dict[str, torch.Tensor], b: int) -> torch.Tensor:
        return torch.cat([g[n].reshape(b, -1).float() for n in names], dim=1)

    if use_vmap:
        g = vmap(grad_f, in_dims=(None, 0, None if labels is None else 0))(selected, mapped, labels)
        return flatten(g, batch_size)
    rows = []
    for i in range(batch_size):
        ex = {k: v[i] for k, v in mapped.items()}
        g = grad_f(selected, ex, None if labels is None else labels[i])
        rows.append(flatten({k: v.unsqueeze(0) for k, v in g.items()}, 1))
    return torch.cat(rows, dim=0)

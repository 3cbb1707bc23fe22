"""The scalar f_i whose per-example gradient is taken: task detection, targets and per-example losses.

Every function here works on a batch and returns one value per example, so that summing over the batch
keeps the per-example terms separate (``∇ Σ_i f_i`` restricted to example i's activations is ``∇ f_i``).
The same code runs on a batch of one inside ``torch.func.vmap``.

Per-example losses (the ``target`` "loss" / "pseudo_label" / "random_label"):

- classification: ``CE(z_i, y_i)`` (as transformers' ``BertForSequenceClassification``);
- regression: ``(f_i - y_i)^2``, with f squeezed to a scalar (transformers uses ``MSELoss`` on the squeezed
  logits, whose batch-of-one value is exactly this; no factor 1/2);
- token classification: the mean of ``CE(z_it, y_it)`` over the tokens of example i with ``y_it != -100``;
- causal LM: the shifted mean ``(1/n_i) Σ_t CE(z_{i,t}, x_{i,t+1})`` over positions whose next token is
  not padding (attention mask) and whose label is not -100 (transformers' ``ForCausalLMLoss`` on one example).

``target="output"``: regression uses f_i itself (a 1-d output) or ``uᵀ f_i`` for a multi-output head;
classification uses ``uᵀ z_i``; token classification / causal LM the mean of ``uᵀ z_it`` over the same
tokens as the loss. ``u`` is a fixed unit vector drawn from ``derive_seed(seed, "output_projection")``:
a random projection of the logits, so one scalar per example (the paper's ``∇_θ f(x; 0)``) for any
number of classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_skmm.gradients.params import find_head, unwrap_model

IGNORE_INDEX = -100


def detect_task(model: nn.Module, task: str = "auto") -> str:
    """Resolve ``task="auto"`` from the model class (transformers naming) or the head size.

    ``*ForSequenceClassification``: "regression" when ``num_labels == 1`` or ``problem_type ==
    "regression"``, else "classification"; ``*ForTokenClassification``: "token_classification";
    ``*ForCausalLM`` / ``*LMHeadModel``: "causal_lm"; any other module: "regression" when its head has a
    single output, else "classification".
    """
    if task != "auto":
        return task
    base = unwrap_model(model)
    cls = type(base).__name__
    config = getattr(base, "config", None)
    if cls.endswith("ForSequenceClassification"):
        problem = getattr(config, "problem_type", None)
        if problem == "multi_label_classification":
            raise ValueError(
                "GradientConfig.task: multi-label classification (problem_type='multi_label_classification') "
                "is not supported; set task='classification' with single labels, or task='regression'."
            )
        if problem == "regression" or getattr(config, "num_labels", 2) == 1:
            return "regression"
        return "classification"
    if cls.endswith("ForTokenClassification"):
        return "token_classification"
    if cls.endswith("ForCausalLM") or cls.endswith("LMHeadModel"):
        return "causal_lm"
    head = dict(base.named_modules())[find_head(base)]
    out = getattr(head, "out_features", getattr(head, "nf", 2))
    return "regression" if out == 1 else "classification"


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments passed to the model: the batch without its labels (the loss is ours)."""
    return {k: v for k, v in batch.items() if k not in ("labels", "label", "label_ids")}


def batch_labels(batch: Mapping[str, Any]) -> torch.Tensor | None:
    for key in ("labels", "label", "label_ids"):
        if key in batch and batch[key] is not None:
            return torch.as_tensor(batch[key])
    return None


def logits_of(output: Any) -> torch.Tensor:
    """The logits tensor of a model output (``ModelOutput.logits``, a tuple's first entry, or a tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if (
        logits is None
        and isinstance(output, Sequence)
        and len(output)
        and isinstance(output[0], torch.Tensor)
    ):
        logits = output[0]
    if logits is None:
        raise TypeError(
            f"model output of type {type(output).__name__} has no logits; the model must return a tensor, a "
            "tuple whose first entry is the logits, or an object with a .logits attribute."
        )
    return logits


def token_mask(batch: Mapping[str, Any], task: str, like: torch.Tensor) -> torch.Tensor | None:
    """Boolean [b, T] mask of the tokens a token-level loss averages over (before any LM shift)."""
    if task not in ("token_classification", "causal_lm"):
        return None
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    return torch.as_tensor(mask, device=like.device).bool()


def label_free_valid(
    batch: Mapping[str, Any], task: str, like: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Label positions a label-free target ("pseudo_label", "output", "random_label") uses, [b, T] bool.

    Token classification: real tokens (attention mask) whose label, when the batch has labels, is not -100
    (special tokens / sub-word continuations). Causal LM: :func:`lm_label_mask` of the attention mask,
    minus positions labelled -100 when the batch has labels (aligned with ``input_ids``). ``labels``: the
    batch's labels ([b, T]) or ``None``.
    """
    mask = token_mask(batch, task, like)
    valid = lm_label_mask(mask) if task == "causal_lm" else mask
    if labels is not None and labels.dim() == 2:
        valid = valid & (labels.to(valid.device) != IGNORE_INDEX)
    return valid


def lm_label_mask(mask: torch.Tensor) -> torch.Tensor:
    """Causal LM: label position t counts when tokens t and t-1 are both real (t >= 1).

    With right padding this is ``attention_mask`` shifted; with left padding it also drops the first real
    token, which would otherwise be "predicted" from a pad position. So padded and unpadded copies of an
    example have the same loss whatever the padding side.
    """
    return torch.cat([torch.zeros_like(mask[:, :1]), mask[:, 1:] & mask[:, :-1]], dim=1)


def output_projection(num_outputs: int, seed: int, device: torch.device | None = None) -> torch.Tensor:
    """The fixed unit vector ``u ∈ R^C`` of ``target="output"`` (drawn on CPU from the derived seed)."""
    from hf_skmm.sketch import derive_seed

    gen = torch.Generator().manual_seed(derive_seed(seed, "output_projection") % (2**63))
    u = torch.randn(num_outputs, generator=gen, dtype=torch.float64)
    return (u / u.norm()).to(torch.float32).to(device)


def random_labels(
    task: str,
    row_indices: torch.Tensor,
    seed: int,
    num_outputs: int,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Labels drawn per example from ``derive_seed(seed, "random_label", row)``.

    Classification: one class in ``[0, C)``; regression: a standard normal value; token-level tasks: one
    class (token) per valid token, indexed by the token's rank among the example's valid tokens, so the
    labels do not depend on padding side or padded length. Invalid positions get -100.
    """
    from hf_skmm.sketch import derive_seed

    rows = [int(r) for r in torch.as_tensor(row_indices).reshape(-1).tolist()]
    out = []
    for i, row in enumerate(rows):
        gen = torch.Generator().manual_seed(derive_seed(seed, "random_label", row) % (2**63))
        if task == "regression":
            out.append(torch.randn((), generator=gen))
        elif task == "classification":
            out.append(torch.randint(num_outputs, (), generator=gen))
        else:
            assert valid is not None
            v = valid[i].cpu()
            n = int(v.sum())
            draws = torch.randint(num_outputs, (max(n, 1),), generator=gen)
            lab = torch.full(v.shape, IGNORE_INDEX, dtype=torch.long)
            lab[v] = draws[:n]
            out.append(lab)
    return torch.stack(out)


def prepare_labels(
    batch: Mapping[str, Any],
    task: str,
    target: str,
    seed: int,
    row_indices: torch.Tensor | None,
    num_outputs: int,
) -> torch.Tensor | None:
    """The labels the per-example loss uses ("pseudo_label" / "output": ``None``, or for token tasks the
    batch's ``[b, T]`` labels, used only as the mask of counted tokens).

    For causal LM the labels are aligned with ``input_ids`` (shifted inside the loss): the batch's
    ``labels`` if present, else ``input_ids`` with padded positions set to -100 (the usual LM collator).

    Raises:
        ValueError: target "loss" without labels, or "random_label" without ``row_indices``.
    """
    if target in ("pseudo_label", "output"):
        # token tasks: the batch's labels only say which tokens count (-100 = ignored), never the target
        labels = batch_labels(batch)
        token_level = task in ("token_classification", "causal_lm")
        return labels if token_level and labels is not None and labels.dim() == 2 else None
    if target == "random_label":
        if row_indices is None:
            raise ValueError(
                "row_indices: got None with GradientConfig.target='random_label'; random labels are keyed on "
                "each example's global row number so results do not depend on batching. Pass "
                "row_indices=<LongTensor [b] of dataset row numbers>."
            )
        ref = batch.get("input_ids", None)
        valid = None
        if task in ("causal_lm", "token_classification"):
            valid = label_free_valid(batch, task, torch.as_tensor(ref), batch_labels(batch))
        labels = random_labels(task, row_indices, seed, num_outputs, valid)
        device = ref.device if isinstance(ref, torch.Tensor) else None
        return labels.to(device) if device is not None else labels
    labels = batch_labels(batch)
    if labels is None:
        if task == "causal_lm" and "input_ids" in batch:
            ids = torch.as_tensor(batch["input_ids"])
            return ids.masked_fill(~lm_label_mask(token_mask(batch, task, ids)), IGNORE_INDEX)
        raise ValueError(
            f"batch: no 'labels' with GradientConfig.target='loss' (keys: {sorted(batch)}); add a labels "
            "column (the collator renames 'label' to 'labels'), or use a label-free target "
            "('pseudo_label', 'random_label' or 'output')."
        )
    if task == "causal_lm" and "attention_mask" in batch:
        keep = lm_label_mask(torch.as_tensor(batch["attention_mask"]).bool().to(labels.device))
        labels = labels.masked_fill(~keep, IGNORE_INDEX)
    return labels


def _token_ce_mean(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example mean CE over tokens with label != -100 (0 for an example without such tokens)."""
    valid = labels != IGNORE_INDEX
    ce = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.clamp_min(0).reshape(-1),
        reduction="none",
    ).reshape(labels.shape)
    ce = ce * valid
    return ce.sum(-1) / valid.sum(-1).clamp_min(1)


def per_example_objective(
    logits: torch.Tensor,
    batch: Mapping[str, Any],
    labels: torch.Tensor | None,
    task: str,
    target: str,
    projection: torch.Tensor | None = None,
) -> torch.Tensor:
    """f_i for every example of the batch, float32 ``[b]`` (formulas in the module docstring).

    Args:
        logits: model output ``[b, C]`` (``[b]`` / ``[b, 1]`` for regression) or ``[b, T, C]`` (token tasks).
        batch: the batch (its ``attention_mask`` defines the tokens of token-level "pseudo_label" / "output").
        labels: from :func:`prepare_labels` (for "pseudo_label" / "output" only a token mask, or ``None``).
        task, target: resolved task and :attr:`GradientConfig.target`.
        projection: the unit vector of "output" for a multi-output model.
    """
    z = logits.float()
    if task == "regression":
        f = z.reshape(z.shape[0], -1)
        if target == "output":
            return f[:, 0] if f.shape[1] == 1 else f @ projection
        return ((f - labels.to(f).reshape(f.shape)) ** 2).mean(-1)
    if task == "classification":
        z = z.reshape(z.shape[0], -1)
        if target == "output":
            return z @ projection
        if target == "pseudo_label":
            labels = z.detach().argmax(-1)
        return F.cross_entropy(z, labels.reshape(-1).long(), reduction="none")
    # token-level tasks: z [b, T, C]
    # non-in-place construction throughout: this also runs inside torch.func.vmap
    # causal LM: position t predicts token t+1, so logits drop the last step and labels the first
    shift = slice(None, -1) if task == "causal_lm" else slice(None)
    label_shift = slice(1, None) if task == "causal_lm" else slice(None)
    shift_z = z[:, shift]
    if target in ("pseudo_label", "output"):
        valid = label_free_valid(batch, task, z, labels)[:, label_shift]
        fill = (
            shift_z.detach().argmax(-1)
            if target == "pseudo_label"
            else torch.zeros_like(valid, dtype=torch.long)
        )
        shift_labels = torch.where(valid, fill, IGNORE_INDEX)
    else:
        shift_labels = labels[:, label_shift]
    if target == "output":
        valid = shift_labels != IGNORE_INDEX
        proj = (shift_z @ projection) * valid
        return proj.sum(-1) / valid.sum(-1).clamp_min(1)
    return _token_ce_mean(shift_z, shift_labels.long())

"""Per-example gradients sketched on the fly: the functional core and the thin ``GradientSketcher``.

One batch in, ``G_batch Γ`` out (SkMM, Dong et al., NeurIPS 2024, Alg. 3.1 step 1): never more than one
batch of r-dimensional gradients in memory, and with Kronecker parts not even that.

The sketch Γ ∈ R^{r×m} follows the parameter layout of :mod:`hf_skmm.gradients.params`: one
``LayerwiseSketch`` whose parts are keyed by parameter name, ``G Γ = Σ_l G_l Γ_l``, each part seeded with
``derive_seed(seed, "gradients", name)``. With ``SketchConfig.kind == "kronecker"`` every 2-D parameter
gets a ``KroneckerSketch`` part (rows × columns of the parameter as stored) and every other parameter a
``GaussianSketch`` part; other kinds use that kind for every part. Both engines use the very same parts:
the structured engine feeds Kronecker parts the factors (``apply_factors``, never forming ΔW) and the
other parts the per-example block it forms; the generic engine feeds every part its flattened block
(``apply``). So the two engines agree to float tolerance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import nn

from hf_skmm.gradients.config import GradientConfig
from hf_skmm.gradients.generic import choose_mask_layout, generic_per_example_grads
from hf_skmm.gradients.losses import (
    batch_labels,
    detect_task,
    logits_of,
    model_inputs,
    output_projection,
    per_example_objective,
    prepare_labels,
)
from hf_skmm.gradients.params import ParamBlock, build_layout, select_parameter_names, unwrap_model
from hf_skmm.gradients.structured import (
    block_factors,
    block_gradient,
    capture_factors,
    structured_per_example_grads,
    supports_structured,
)

logger = logging.getLogger(__name__)

__all__ = [
    "GradientSketcher",
    "build_layout_sketch",
    "per_example_grads",
    "prepared_model",
    "sketch_batch",
]


def build_layout_sketch(layout: Sequence[ParamBlock], sketch_config: Any):
    """The ``LayerwiseSketch`` Γ of a parameter layout: ``sketch_config.build_layerwise`` over the blocks.

    One part per parameter, keyed and seeded by its name (``derive_seed(seed, name)``); Kronecker parts for
    2-D parameters when ``kind == "kronecker"`` (rows × columns as stored), Gaussian parts otherwise.

    Args:
        layout: the selected parameter blocks, in order.
        sketch_config: a ``hf_skmm.sketch.SketchConfig`` (``kind``, ``dim`` = m, ``seed``, ``nnz``...).
    """
    return sketch_config.build_layerwise({block.name: block.shape for block in layout})


@contextmanager
def prepared_model(model: nn.Module, trainable: set[str] | None = None):
    """Eval mode (dropout off) and, when given, ``requires_grad`` only on ``trainable``; restored on exit.

    Every module's ``training`` flag and every parameter's ``requires_grad`` flag are put back exactly as
    they were, also when an exception is raised. Gradients are enabled inside (callers may sit in
    ``torch.no_grad()`` or ``torch.inference_mode()``).
    """
    modes = [(module, module.training) for module in model.modules()]
    flags = [(p, p.requires_grad) for _, p in model.named_parameters()]
    try:
        model.eval()
        if trainable is not None:
            for name, p in model.named_parameters():
                p.requires_grad_(name in trainable)
        with torch.inference_mode(False), torch.enable_grad():
            yield model
    finally:
        for module, mode in modes:
            module.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    out = {}
    with torch.inference_mode(False):
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                # tensors made under torch.inference_mode() cannot be saved for backward: copy them
                v = v.clone() if v.is_inference() else v
                v = v.to(device)
            out[k] = v
    return out


def _batch_size(batch: Mapping[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    raise ValueError(
        f"batch: no tensor with a batch dimension among keys {sorted(batch)}; pass collated tensors."
    )


def num_model_outputs(model: nn.Module, batch: Mapping[str, Any]) -> int:
    """Size of the logits' last dimension (classes, labels or vocabulary), from a no-grad forward of one example."""
    one = {
        k: (v[:1] if isinstance(v, torch.Tensor) and v.dim() > 0 else v)
        for k, v in model_inputs(batch).items()
    }
    with prepared_model(model), torch.no_grad():  # this order: prepared_model enables grad
        logits = logits_of(model(**one))
    return 1 if logits.dim() == 1 else int(logits.shape[-1])


def _objective(output: Any, batch: Mapping[str, Any], labels: Any, task: str, target: str, projection: Any):
    return per_example_objective(logits_of(output), batch, labels, task, target, projection)


def _setup(
    model: nn.Module,
    batch: Mapping[str, Any],
    task: str,
    target: str,
    seed: int,
    row_indices: torch.Tensor | None,
    num_outputs: int | None,
):
    device = _model_device(model)
    batch = _to_device(batch, device)
    b = _batch_size(batch)
    if row_indices is not None and len(torch.as_tensor(row_indices).reshape(-1)) != b:
        raise ValueError(
            f"row_indices: got {len(torch.as_tensor(row_indices).reshape(-1))} row numbers for a batch of {b}; "
            "pass one global row number per example."
        )
    if target == "loss" and batch_labels(batch) is None and task != "causal_lm":
        prepare_labels(batch, task, target, seed, row_indices, 0)  # raises the "no labels" error
    need_c = (target == "random_label" and task != "regression") or target == "output"
    if need_c and num_outputs is None:
        num_outputs = num_model_outputs(model, batch)
    labels = prepare_labels(batch, task, target, seed, row_indices, num_outputs or 0)
    projection = None
    if target == "output":
        projection = output_projection(num_outputs, seed, device) if num_outputs and num_outputs > 1 else None
    objective = partial(_objective, task=task, target=target, projection=projection)
    return batch, b, labels, objective


def _run(
    model: nn.Module,
    layout: Sequence[ParamBlock],
    batch: Mapping[str, Any],
    *,
    task: str,
    target: str,
    seed: int,
    engine: str,
    row_indices: torch.Tensor | None,
    sketch: Any,
    use_vmap: bool,
    chunk_size: int,
    num_outputs: int | None,
    mask_layout: str | None = "auto",
) -> torch.Tensor:
    batch, b, labels, objective = _setup(model, batch, task, target, seed, row_indices, num_outputs)
    inputs = model_inputs(batch)
    if engine == "structured":
        with prepared_model(model, trainable={block.name for block in layout}):
            factors = capture_factors(model, layout, lambda: objective(model(**inputs), batch, labels), b)
        if sketch is None:
            return structured_per_example_grads(layout, factors)
        out = None
        for block in layout:
            calls = factors[block.module_name]
            if block.role == "weight" and hasattr(sketch.parts[block.name], "apply_factors"):
                value: Any = block_factors(block, calls)  # Kronecker part: ΔW is never formed
            else:
                value = block_gradient(block, calls)  # formed one block [b, numel] at a time
            term = sketch.apply_parts({block.name: value}, allow_missing=True)
            out = term if out is None else out + term
        return out
    with prepared_model(model):
        if mask_layout == "auto":
            mask_layout = choose_mask_layout(model, inputs, b) if use_vmap else None
        # chunk by chunk: at most chunk_size x r gradient entries exist at once when sketching
        step = chunk_size or b
        outs = []
        for start in range(0, b, step):
            sl = slice(start, min(start + step, b))
            sub = {k: (v[sl] if _batched(v, b) else v) for k, v in inputs.items()}
            grads = generic_per_example_grads(
                model, layout, sub, None if labels is None else labels[sl], objective, sl.stop - sl.start,
                use_vmap=use_vmap, mask_layout=mask_layout,
            )  # fmt: skip
            if sketch is not None:
                grads = sketch.apply_parts(
                    {block.name: grads[:, block.offset : block.offset + block.numel] for block in layout}
                )
            outs.append(grads)
    return torch.cat(outs, dim=0)


def _batched(value: Any, batch_size: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size


def per_example_grads(
    model: nn.Module,
    layout: Sequence[ParamBlock],
    batch: Mapping[str, Any],
    *,
    task: str,
    target: str = "loss",
    seed: int = 0,
    engine: str = "structured",
    row_indices: torch.Tensor | None = None,
    use_vmap: bool = True,
    chunk_size: int = 0,
    num_outputs: int | None = None,
    mask_layout: str | None = "auto",
) -> torch.Tensor:
    """Unsketched per-example gradients ``G_batch ∈ R^{b×r}`` (float32, on the model's device).

    Row i is ``∇_θ f_i`` for the parameters of ``layout`` flattened in layout order, with f_i the
    per-example objective of :mod:`hf_skmm.gradients.losses` (``task``, ``target``; random draws from
    ``seed`` keyed on ``row_indices``). ``engine`` is "structured" (hooks; linear layers only) or
    "generic" (``torch.func``; ``mask_layout``: see :func:`~hf_skmm.gradients.generic.choose_mask_layout`,
    "auto" checks it on this batch). The model's mode, parameters and flags are unchanged afterwards.
    """
    return _run(
        model, layout, batch, task=task, target=target, seed=seed, engine=engine, row_indices=row_indices,
        sketch=None, use_vmap=use_vmap, chunk_size=chunk_size, num_outputs=num_outputs, mask_layout=mask_layout,
    )  # fmt: skip


def sketch_batch(
    model: nn.Module,
    layout: Sequence[ParamBlock],
    sketch: Any,
    batch: Mapping[str, Any],
    *,
    task: str,
    target: str = "loss",
    seed: int = 0,
    engine: str = "structured",
    row_indices: torch.Tensor | None = None,
    use_vmap: bool = True,
    chunk_size: int = 0,
    num_outputs: int | None = None,
    mask_layout: str | None = "auto",
) -> torch.Tensor:
    """Sketched per-example gradients ``G_batch Γ = Σ_l G_l Γ_l ∈ R^{b×m}`` (float32, model's device).

    Same arguments as :func:`per_example_grads` plus ``sketch`` (from :func:`build_layout_sketch`).
    """
    return _run(
        model, layout, batch, task=task, target=target, seed=seed, engine=engine, row_indices=row_indices,
        sketch=sketch, use_vmap=use_vmap, chunk_size=chunk_size, num_outputs=num_outputs, mask_layout=mask_layout,
    )  # fmt: skip


def _is_vmap_failure(err: Exception) -> bool:
    text = str(err)
    return "vmap" in text or "functorch" in text or "Batching rule" in text


class GradientSketcher:
    """Sketched per-example gradients of ``model`` for one batch at a time.

    Args:
        model: a transformers model, a peft ``PeftModel`` or a plain ``nn.Module`` (its forward takes the
            batch's keys, minus labels, as keyword arguments and returns logits or an output with ``.logits``).
        gradient_config: what to differentiate (:class:`GradientConfig`).
        sketch_config: a ``hf_skmm.sketch.SketchConfig`` (kind, dim = m, seed); its seed is the run seed.

    Attributes:
        out_dim: m. num_params: r. param_names: the differentiated parameters, in layout order.
        layout: their :class:`ParamBlock`\\ s. engine: the resolved engine. task: the resolved task.

    Example::

        sketcher = GradientSketcher(model, GradientConfig(params="lora"), SketchConfig(kind="kronecker", dim=256))
        sketches = sketcher(batch, row_indices=torch.arange(start, start + len(batch["input_ids"])))  # [b, 256]
    """

    def __init__(
        self, model: nn.Module, gradient_config: GradientConfig | None = None, sketch_config: Any = None
    ):
        from hf_skmm.sketch import SketchConfig

        self.model = model
        self.gradient_config = gradient_config if gradient_config is not None else GradientConfig()
        self.sketch_config = sketch_config if sketch_config is not None else SketchConfig()
        cfg = self.gradient_config
        self.task = detect_task(model, cfg.task)
        if cfg.target == "pseudo_label" and self.task == "regression":
            raise ValueError(
                f"GradientConfig.target: got 'pseudo_label' but {type(unwrap_model(model)).__name__} is a "
                "regression model (the loss against its own prediction is 0); use target='output' or 'random_label'."
            )
        self.layout = build_layout(model, select_parameter_names(model, cfg))
        structured_ok = supports_structured(self.layout)
        if cfg.engine == "structured" and not structured_ok:
            bad = [b.name for b in self.layout if b.role == "other"][:5]
            raise ValueError(
                f"GradientConfig.engine: got 'structured' but parameters {bad} are not the weight/bias of an "
                "unshared nn.Linear / Conv1D (LayerNorm, embeddings, tied heads, DoRA magnitudes); use "
                "engine='generic' or 'auto'."
            )
        self.engine = cfg.engine if cfg.engine != "auto" else ("structured" if structured_ok else "generic")
        self._use_vmap = cfg.vmap != "off"
        self._num_outputs: int | None = None
        self._mask_layout: str | None = "auto"  # resolved on the first generic-engine batch
        self._sketch = None

    @property
    def param_names(self) -> list[str]:
        return [block.name for block in self.layout]

    @property
    def num_params(self) -> int:
        return sum(block.numel for block in self.layout)

    @property
    def out_dim(self) -> int:
        return int(self.sketch_config.dim)

    @property
    def sketch(self):
        """The ``LayerwiseSketch`` Γ ∈ R^{r×m} (built on first use)."""
        if self._sketch is None:
            self._sketch = build_layout_sketch(self.layout, self.sketch_config)
        return self._sketch

    def _kwargs(self, row_indices: torch.Tensor | None) -> dict[str, Any]:
        cfg = self.gradient_config
        return dict(
            task=self.task,
            target=cfg.target,
            seed=int(self.sketch_config.seed),
            engine=self.engine,
            row_indices=row_indices,
            use_vmap=self._use_vmap,
            chunk_size=cfg.chunk_size,
            num_outputs=self._num_outputs,
            mask_layout=self._mask_layout if self._use_vmap else None,
        )

    def _call(
        self, fn, batch: Mapping[str, Any], row_indices: torch.Tensor | None, *args: Any
    ) -> torch.Tensor:
        if self._num_outputs is None and (
            self.gradient_config.target == "output" or self.gradient_config.target == "random_label"
        ):
            self._num_outputs = num_model_outputs(self.model, _to_device(batch, _model_device(self.model)))
        if self.engine == "generic" and self._use_vmap and self._mask_layout == "auto":
            inputs = model_inputs(_to_device(batch, _model_device(self.model)))
            with prepared_model(self.model):
                self._mask_layout = choose_mask_layout(self.model, inputs, _batch_size(inputs))
            logger.info("generic engine: 4-D attention mask layout %s", self._mask_layout)
        try:
            out = fn(self.model, self.layout, *args, batch, **self._kwargs(row_indices))
        except RuntimeError as err:
            if not (self.engine == "generic" and self._use_vmap and self.gradient_config.vmap == "auto"):
                raise
            if not _is_vmap_failure(err):
                raise
            logger.warning(
                "torch.func.vmap cannot trace %s (%s); the generic engine loops over examples instead.",
                type(unwrap_model(self.model)).__name__,
                str(err).splitlines()[0][:120],
            )
            self._use_vmap = False
            out = fn(self.model, self.layout, *args, batch, **self._kwargs(row_indices))
        return out.detach().float().cpu()

    def __call__(self, batch: Mapping[str, Any], row_indices: torch.Tensor | None = None) -> torch.Tensor:
        """Sketched per-example gradients of the batch: float32 ``[b, m]`` on the CPU.

        Args:
            batch: collated tensors (``input_ids``, ``attention_mask``, ``labels``, ... or ``features``).
            row_indices: the examples' global row numbers (required for ``target="random_label"``).
        """
        return self._call(sketch_batch, batch, row_indices, self.sketch)

    def per_example_gradients(
        self, batch: Mapping[str, Any], row_indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unsketched per-example gradients ``[b, r]`` (float32, CPU), flattened in :attr:`layout` order."""
        return self._call(per_example_grads, batch, row_indices)

    def identity(self) -> dict[str, Any]:
        """JSON-able description of everything that determines the output (used in cache fingerprints)."""
        sk = self.sketch_config
        sk_dict = sk.to_dict() if hasattr(sk, "to_dict") else dict(vars(sk))
        return {
            "model_class": type(unwrap_model(self.model)).__name__,
            "task": self.task,
            "engine": self.engine,
            "num_params": self.num_params,
            "out_dim": self.out_dim,
            "params": [block.to_dict() for block in self.layout],
            # vmap / chunk_size change speed and memory, not the result
            "gradient_config": {
                k: v for k, v in self.gradient_config.to_dict().items() if k not in ("vmap", "chunk_size")
            },
            "sketch_config": sk_dict,
        }

    def __repr__(self) -> str:
        return (
            f"GradientSketcher(engine={self.engine!r}, task={self.task!r}, params={len(self.layout)} blocks, "
            f"r={self.num_params}, m={self.out_dim})"
        )

"""One m-vector from several parameter blocks: Γ = [Γ_1; Γ_2; …; Γ_L] stacked vertically.

Layout ("sum"): the differentiated parameters θ = (θ_1, …, θ_L) are concatenated in the order of
``parts``; part l has its own sketch Γ_l ∈ R^{r_l × m} (all parts share the same out_dim m), and

    sketch(g) = [g_1, …, g_L] [Γ_1; …; Γ_L] = Σ_l Γ_lᵀ g_l,

which is *exactly* a sketch of the concatenated gradient with the stacked matrix Γ ∈ R^{(Σ r_l) × m}.
With Gaussian parts (entries N(0, 1/m)) and Kronecker parts (variance 1/(m_out m_in) = 1/m) every
entry of Γ has variance 1/m, so E‖Γᵀg‖² = ‖g‖² for the whole gradient. Parts built by
:meth:`LayerwiseSketch.from_shapes` are seeded with ``derive_seed(seed, part_name)``, so adding or
removing a layer does not change the other layers' Γ_l.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from hf_skmm.sketch.base import (
    Sketch,
    _check_seed,
    check_positive_int,
    derive_seed,
    make_sketch,
    register_sketch,
)
from hf_skmm.sketch.gaussian import GaussianSketch
from hf_skmm.sketch.kronecker import KroneckerSketch, kronecker_factors
from hf_skmm.sketch.sparse import SparseSignSketch

logger = logging.getLogger(__name__)

__all__ = ["LayerwiseSketch"]

_BUILTIN: dict[str, type[Sketch]] = {"gaussian": GaussianSketch, "sparse_sign": SparseSignSketch}


class LayerwiseSketch(Sketch):
    """Sketch of a gradient made of named parameter blocks (see the module docstring for the layout).

    Args:
        parts: ordered mapping ``name -> Sketch``; every part must have the same ``out_dim`` (m). The
            concatenated input has ``in_dim = Σ parts[name].in_dim`` in this order.
        seed: the run seed the parts were derived from (recorded in the config; the parts carry their
            own seeds).

    Example:
        >>> sk = LayerwiseSketch.from_shapes({"fc.weight": (4, 8), "fc.bias": (4,)}, out_dim=16, seed=0)
        >>> sk.apply_parts({"fc.weight": torch.randn(2, 4, 8), "fc.bias": torch.randn(2, 4)}).shape
        torch.Size([2, 16])
    """

    kind = "layerwise"

    def __init__(self, parts: Mapping[str, Sketch], seed: int = 0) -> None:
        name = type(self).__name__
        if not isinstance(parts, Mapping) or len(parts) == 0:
            raise ValueError(
                f"{name}: parts must be a non-empty mapping name -> Sketch, got {parts!r}; "
                "use LayerwiseSketch.from_shapes to build one from parameter shapes."
            )
        for key, part in parts.items():
            if not isinstance(key, str):
                raise TypeError(f"{name}: part names must be str, got {key!r}.")
            if not isinstance(part, Sketch):
                raise TypeError(f"{name}: parts[{key!r}] must be a Sketch, got {type(part).__name__}.")
        dims = {key: part.out_dim for key, part in parts.items()}
        if len(set(dims.values())) != 1:
            raise ValueError(
                f"{name}: all parts must share one out_dim (the 'sum' layout adds them), got {dims}; build "
                "every part with the same m."
            )
        self.parts: dict[str, Sketch] = dict(parts)
        self.seed = _check_seed(seed, name)
        self.out_dim = next(iter(dims.values()))
        self.in_dim = sum(p.in_dim for p in self.parts.values())
        offsets = np.cumsum([0] + [p.in_dim for p in self.parts.values()]).tolist()
        #: name -> (start, stop) columns of the concatenated input
        self.slices: dict[str, tuple[int, int]] = {
            key: (offsets[i], offsets[i + 1]) for i, key in enumerate(self.parts)
        }

    @classmethod
    def from_shapes(
        cls,
        shapes: Mapping[str, Sequence[int]],
        out_dim: int,
        seed: int = 0,
        kind: str = "gaussian",
        **kwargs: Any,
    ) -> LayerwiseSketch:
        """Build one part per parameter, seeded ``derive_seed(seed, name)``.

        Args:
            shapes: ordered ``name -> parameter shape`` (e.g. from ``model.named_parameters()``).
            out_dim: m.
            seed: run seed.
            kind: ``"kronecker"`` gives 2-D parameters a :class:`KroneckerSketch` with
                :func:`kronecker_factors` sizes and everything else (biases, 1-D/3-D+ parameters) a
                Gaussian sketch; any other kind is used for every part (with ``**kwargs``).
            **kwargs: options of the part sketches (e.g. ``nnz``, ``block_rows``); each built-in part gets
                the ones its constructor takes.
        """
        out_dim = check_positive_int("out_dim", out_dim, "LayerwiseSketch.from_shapes")
        parts: dict[str, Sketch] = {}
        for key, shape in shapes.items():
            dims = tuple(int(d) for d in shape)
            part_seed = derive_seed(seed, key)
            if kind == "kronecker" and len(dims) == 2:
                m_out, m_in = kronecker_factors(out_dim, *dims)
                parts[key] = KroneckerSketch(dims[0], dims[1], m_out, m_in, seed=part_seed)
            else:
                part_kind = "gaussian" if kind == "kronecker" else kind
                extra = _accepted_kwargs(part_kind, kwargs)
                parts[key] = make_sketch(part_kind, math.prod(dims), out_dim, part_seed, **extra)
        sketch = cls(parts, seed=seed)
        if sketch.in_dim < out_dim:
            logger.info("LayerwiseSketch: r=%d < m=%d, the sketch does not compress.", sketch.in_dim, out_dim)
        return sketch

    def prepare(self, device: torch.device | str = "cpu") -> LayerwiseSketch:
        """Prepare every part on ``device``."""
        for part in self.parts.values():
            part.prepare(device)
        return self

    def apply_parts(self, grads: Mapping[str, Any], allow_missing: bool = False) -> torch.Tensor:
        """Σ_l Γ_lᵀ g_l for per-part inputs.

        Args:
            grads: ``name -> value`` where value is ``[b, r_l]`` or ``[b, *param_shape]`` (flattened row-major),
                or, for Kronecker parts, a tuple ``(delta, h)`` / ``(delta, h, mask)`` for
                :meth:`KroneckerSketch.apply_factors`.
            allow_missing: treat parts absent from ``grads`` as zero gradients instead of raising.

        Returns:
            float32 ``[b, m]`` on the inputs' device.
        """
        name = f"{type(self).__name__}.apply_parts"
        unknown = sorted(set(grads) - set(self.parts))
        if unknown:
            raise ValueError(f"{name}: unknown part(s) {unknown}; the parts are {list(self.parts)}.")
        missing = [k for k in self.parts if k not in grads]
        if missing and not allow_missing:
            raise ValueError(
                f"{name}: missing part(s) {missing}; pass a value for every part or allow_missing=True "
                "to treat them as zero."
            )
        if not grads:
            raise ValueError(f"{name}: grads is empty; pass at least one part.")
        out: torch.Tensor | None = None
        for key, value in grads.items():
            part = self.parts[key]
            if isinstance(value, tuple):
                if not isinstance(part, KroneckerSketch):
                    raise TypeError(
                        f"{name}: parts[{key!r}] is a {type(part).__name__}; only Kronecker parts take "
                        "(delta, h[, mask]) factors, pass the flattened gradient instead."
                    )
                y = part.apply_factors(*value)
            else:
                t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
                if t.dim() > 2:
                    t = t.reshape(t.shape[0], -1)
                y = part.apply(t)
            if y.dim() == 1:
                y = y.unsqueeze(0)
            out = y if out is None else out + y.to(out.device)
        return out

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.out_dim, dtype=torch.float32, device=x.device)
        for key, part in self.parts.items():
            start, stop = self.slices[key]
            out += part._apply(x[:, start:stop])
        return out

    def _dense(self) -> torch.Tensor:
        return torch.cat([part.dense() for part in self.parts.values()], dim=0)

    def _config_kwargs(self) -> dict[str, Any]:
        return {"seed": self.seed, "parts": [[key, part.to_config()] for key, part in self.parts.items()]}

    @classmethod
    def _from_kwargs(cls, kwargs: dict[str, Any]) -> LayerwiseSketch:
        parts = kwargs.get("parts")
        if not isinstance(parts, list):
            raise ValueError(
                f"LayerwiseSketch.from_config: 'parts' must be a list of [name, config] pairs, got {parts!r}."
            )
        built = {key: Sketch.from_config(cfg) for key, cfg in parts}
        return cls(built, seed=kwargs.get("seed", 0))

    def __repr__(self) -> str:
        return f"LayerwiseSketch(parts={list(self.parts)}, in_dim={self.in_dim}, out_dim={self.out_dim})"


def _accepted_kwargs(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The options of ``kwargs`` that a built-in kind's constructor takes (e.g. ``nnz`` only for sparse_sign)."""
    cls = _BUILTIN.get(kind)
    if cls is None:
        return dict(kwargs)
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in kwargs.items() if k in accepted}


def _build_layerwise(in_dim: int, out_dim: int, seed: int = 0, **kwargs: Any) -> LayerwiseSketch:
    raise ValueError(
        "make_sketch('layerwise', ...) cannot know the parameter blocks; build it with "
        "LayerwiseSketch.from_shapes(shapes, out_dim, seed, kind=...) or LayerwiseSketch(parts)."
    )


register_sketch("layerwise", LayerwiseSketch, builder=_build_layerwise)

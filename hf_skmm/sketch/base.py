"""The ``Sketch`` interface, the sketch registry and the seeding rule shared by every sketch.

A sketch is a fixed random linear map Γ ∈ R^{r×m} (``in_dim`` = r, ``out_dim`` = m) applied to row
vectors: ``apply(x) = x Γ`` for ``x`` of shape ``[b, r]``. SkMM (Dong et al., NeurIPS 2024, Alg. 3.1
step 1) sketches the per-example gradient matrix G ∈ R^{N×r} to G Γ ∈ R^{N×m} batch by batch.

Every sketch is a pure function of ``(kind, sizes, seed, options)``: :func:`derive_seed` turns one
run seed into independent, machine-independent sub-seeds (per layer, per generation chunk), and all
random numbers are drawn on the CPU with a seeded ``torch.Generator``, so the same seed gives the same
Γ on any machine, process count, batch size or device.
"""

from __future__ import annotations

import hashlib
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "Sketch",
    "as_float_tensor",
    "check_finite_output",
    "check_positive_int",
    "derive_seed",
    "list_sketches",
    "make_sketch",
    "register_sketch",
    "sketch_from_config",
]

_SEED_BITS = 63


def derive_seed(seed: int, *keys: str | int) -> int:
    """Derive a stable 63-bit sub-seed from a run seed and a path of keys.

    The result is ``int(blake2b("seed|type:key|..."), 63 bits)``: it depends only on the values (never on
    Python's per-process ``hash`` randomisation), so it is identical on every machine and process.
    ``derive_seed(s, "layer.0", 3)`` and ``derive_seed(s, "layer.0", "3")`` differ on purpose (keys are
    typed).

    Args:
        seed: the run seed (any Python int, negative allowed).
        *keys: names or numbers that identify the random object (e.g. a parameter name, a chunk index).

    Returns:
        An int in ``[0, 2**63)``, suitable for ``torch.Generator.manual_seed`` and ``numpy.random.default_rng``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"derive_seed: seed must be an int, got {seed!r} ({type(seed).__name__}); pass an integer."
        )
    parts = [f"int:{int(seed)}"]
    for key in keys:
        if isinstance(key, bool) or not isinstance(key, (str, int, np.integer)):
            raise TypeError(
                f"derive_seed: keys must be str or int, got {key!r} ({type(key).__name__}); "
                "convert it to a string first."
            )
        parts.append(f"str:{key}" if isinstance(key, str) else f"int:{int(key)}")
    digest = hashlib.blake2b("|".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - _SEED_BITS)


def check_positive_int(name: str, value: Any, owner: str) -> int:
    """Return ``value`` as an int if it is a positive integer, else raise a ValueError/TypeError that says so."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be a positive int, got {value!r} ({type(value).__name__}).")
    if value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value}; pass {name} >= 1.")
    return int(value)


def _check_seed(seed: Any, owner: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{owner}: seed must be an int, got {seed!r} ({type(seed).__name__}).")
    return int(seed)


_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def as_float_tensor(x: Any, in_dim: int, owner: str, name: str = "x") -> tuple[torch.Tensor, bool]:
    """Validate a sketch input and return it as a torch tensor of shape ``[b, in_dim]``.

    Accepts a torch tensor or numpy array (or anything ``np.asarray`` takes) of a floating dtype
    (float32/float16/bfloat16, float64 too), shape ``[b, in_dim]`` or ``[in_dim]``. The dtype is *not*
    changed here (sketches upcast block-wise to float32, so a big fp16 input is never copied whole).

    Returns:
        ``(x2d, squeeze)``: the 2-D tensor (a view when possible) and whether the input was 1-D.
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(
                f"{owner}.apply: {name} must hold floating-point numbers, got dtype {arr.dtype}; "
                f"convert it with {name}.astype(np.float32)."
            )
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.layout != torch.strided:
        raise TypeError(
            f"{owner}.apply: {name} has layout {t.layout}, this sketch takes dense tensors; "
            f"call {name}.to_dense() first (SparseSignSketch accepts sparse COO input)."
        )
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{owner}.apply: {name} must be float32/float16/bfloat16 (or float64), got {t.dtype}; "
            f"convert it with {name}.float()."
        )
    shape = tuple(t.shape)
    squeeze = t.dim() == 1
    if squeeze:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[-1] != in_dim:
        raise ValueError(
            f"{owner}.apply: {name} must have shape [batch, {in_dim}] (the sketch's in_dim), got {shape}; "
            f"flatten each example to {in_dim} values or build the sketch with the right in_dim."
        )
    return t, squeeze


def check_finite_output(out: torch.Tensor, owner: str, name: str = "x") -> torch.Tensor:
    """Raise a ValueError if the sketch ``out`` [b, m] has NaN/inf rows.

    Every input coordinate reaches at least one output coordinate with a non-zero weight (almost surely
    for Gaussian entries, always for sparse signs), so a NaN/inf in input row i makes output row i
    non-finite: checking the small [b, m] output detects bad input without another pass over [b, r].
    """
    bad = ~torch.isfinite(out).all(dim=-1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()[:10].tolist()
        raise ValueError(
            f"{owner}.apply: {name} contains NaN or inf in row(s) {rows} (or values so large that the float32 "
            f"sketch overflows); drop or clip those examples (e.g. torch.nan_to_num) before sketching."
        )
    return out


class Sketch(ABC):
    """A JL transform Γ ∈ R^{in_dim × out_dim}; ``apply(x) = x @ Γ`` row-wise.

    Subclasses set the class attribute ``kind`` (their registry name) and implement :meth:`_apply`
    (on a validated 2-D tensor), :meth:`_dense` and :meth:`_config_kwargs`.

    Attributes:
        kind: registry name (``"gaussian"``, ``"sparse_sign"``, ``"kronecker"``, ``"layerwise"``).
        in_dim: r, the input dimension.
        out_dim: m, the sketch dimension.
        seed: the seed Γ is generated from.
    """

    kind: ClassVar[str] = ""
    in_dim: int
    out_dim: int
    seed: int

    def apply(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Sketch rows: ``x Γ``.

        Args:
            x: ``[b, in_dim]`` (or ``[in_dim]``) torch tensor or numpy array, float32/float16/bfloat16
                (float64 accepted). Any device.

        Returns:
            float32 tensor ``[b, out_dim]`` (``[out_dim]`` for a 1-D input) on ``x``'s device; products are
            accumulated in float32.

        Raises:
            ValueError: wrong last dimension, or NaN/inf in ``x``.
            TypeError: non-floating dtype.
        """
        t, squeeze = as_float_tensor(x, self.in_dim, type(self).__name__)
        out = check_finite_output(self._apply(t), type(self).__name__)
        return out[0] if squeeze else out

    __call__ = apply

    def prepare(self, device: torch.device | str = "cpu") -> Sketch:
        """Build what :meth:`apply` needs on ``device`` now (cached tables / matrices), instead of on first use.

        Optional: ``apply`` prepares lazily. Returns ``self``.
        """
        return self

    @abstractmethod
    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        """Sketch a validated ``[b, in_dim]`` tensor (any floating dtype) to float32 ``[b, out_dim]``."""

    def dense(self) -> torch.Tensor:
        """Γ as a dense float32 ``[in_dim, out_dim]`` CPU tensor (for tests and small sizes only)."""
        nbytes = self.in_dim * self.out_dim * 4
        if nbytes > 2**31:
            raise ValueError(
                f"{type(self).__name__}.dense: Γ would take {nbytes / 2**30:.1f} GiB "
                f"(in_dim={self.in_dim}, out_dim={self.out_dim}); use apply() instead of a dense matrix."
            )
        return self._dense()

    def _dense(self) -> torch.Tensor:
        # Generic fallback: Γ = I Γ, sketched in row blocks.
        rows = []
        for start in range(0, self.in_dim, 4096):
            stop = min(start + 4096, self.in_dim)
            eye = torch.zeros(stop - start, self.in_dim)
            eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            rows.append(self._apply(eye))
        return torch.cat(rows, dim=0)

    @abstractmethod
    def _config_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this sketch (JSON-able)."""

    def to_config(self) -> dict[str, Any]:
        """A JSON-able dict ``{"kind": ..., <constructor kwargs>}`` that :meth:`from_config` rebuilds exactly."""
        return {"kind": self.kind, **self._config_kwargs()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sketch:
        """Rebuild a sketch from :meth:`to_config` output.

        Called on :class:`Sketch` itself it dispatches on ``config["kind"]`` through the registry;
        called on a subclass it checks the kind matches.
        """
        if not isinstance(config, dict) or "kind" not in config:
            raise ValueError(
                f"{cls.__name__}.from_config: config must be a dict with a 'kind' key, got {config!r}; "
                "pass the output of Sketch.to_config()."
            )
        kwargs = dict(config)
        kind = kwargs.pop("kind")
        target = _lookup(kind)
        if cls is not Sketch and not issubclass(target, cls):
            raise ValueError(
                f"{cls.__name__}.from_config: config kind {kind!r} builds {target.__name__}, not {cls.__name__}; "
                "use Sketch.from_config to dispatch on the kind."
            )
        return target._from_kwargs(kwargs)

    @classmethod
    def _from_kwargs(cls, kwargs: dict[str, Any]) -> Sketch:
        return cls(**kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config_kwargs().items() if k != "parts")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sketch) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_config().items(), key=lambda kv: kv[0])))

    @staticmethod
    def _scale(m: int) -> float:
        return 1.0 / math.sqrt(m)


# --------------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[Sketch]] = {}
_BUILDERS: dict[str, Callable[..., Sketch]] = {}


def register_sketch(kind: str, cls: type[Sketch], builder: Callable[..., Sketch] | None = None) -> None:
    """Register a sketch class under ``kind`` (the name used by :func:`make_sketch` and configs).

    Args:
        kind: registry name; must equal ``cls.kind``.
        cls: a :class:`Sketch` subclass whose constructor accepts its own ``to_config()`` kwargs.
        builder: optional ``builder(in_dim, out_dim, seed, **kw) -> Sketch`` used by :func:`make_sketch`
            when the class constructor has another signature (e.g. Kronecker's factor sizes).
    """
    if not isinstance(cls, type) or not issubclass(cls, Sketch):
        raise TypeError(f"register_sketch: cls must be a Sketch subclass, got {cls!r}.")
    if cls.kind != kind:
        raise ValueError(
            f"register_sketch: kind {kind!r} differs from {cls.__name__}.kind={cls.kind!r}; set the class "
            "attribute `kind` to the registry name."
        )
    _REGISTRY[kind] = cls
    if builder is not None:
        _BUILDERS[kind] = builder


def list_sketches() -> list[str]:
    """Names of the registered sketch kinds, sorted."""
    return sorted(_REGISTRY)


def _lookup(kind: Any) -> type[Sketch]:
    if kind not in _REGISTRY:
        raise ValueError(f"unknown sketch kind {kind!r}; choose one of {list_sketches()}.")
    return _REGISTRY[kind]


def make_sketch(kind: str, in_dim: int, out_dim: int, seed: int = 0, **kwargs: Any) -> Sketch:
    """Build a registered sketch Γ ∈ R^{in_dim × out_dim}.

    Args:
        kind: one of :func:`list_sketches` (``"gaussian"``, ``"sparse_sign"``, ``"kronecker"``, ...).
        in_dim: r.
        out_dim: m.
        seed: the seed Γ is generated from.
        **kwargs: kind-specific options (``block_rows`` for gaussian, ``nnz`` for sparse_sign,
            ``d_out``/``d_in`` (and optionally ``m_out``/``m_in``) for kronecker).

    Returns:
        The sketch.
    """
    cls = _lookup(kind)
    builder = _BUILDERS.get(kind)
    if builder is not None:
        return builder(in_dim, out_dim, seed, **kwargs)
    return cls(in_dim=in_dim, out_dim=out_dim, seed=seed, **kwargs)


def sketch_from_config(config: dict[str, Any]) -> Sketch:
    """Rebuild any registered sketch from its ``to_config()`` dict (alias of ``Sketch.from_config``)."""
    return Sketch.from_config(config)

"""``SketchConfig``: the user-facing description of the JL sketch of a run (HfArgumentParser-compatible)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hf_skmm._config import DictConfigMixin
from hf_skmm.sketch.base import Sketch, check_positive_int, list_sketches, make_sketch
from hf_skmm.sketch.gaussian import DEFAULT_BLOCK_ROWS
from hf_skmm.sketch.layerwise import LayerwiseSketch

__all__ = ["SketchConfig"]

#: kinds a user may pick (``layerwise`` is built from these by the gradient layer)
USER_KINDS = ("gaussian", "sparse_sign", "kronecker")


@dataclass
class SketchConfig(DictConfigMixin):
    """How per-example gradients are sketched to m dimensions (SkMM Alg. 3.1 step 1).

    ``kind`` defaults to ``"gaussian"`` (the paper's N(0, 1/m) embedding and the best quality per
    dimension); ``"kronecker"`` is much faster for linear-layer gradients (never forms ΔW) at a higher
    variance; ``"sparse_sign"`` is the fast JL for large flat gradient vectors. ``seed`` is *the* seed of
    a run: every other random choice is derived from it with :func:`~hf_skmm.sketch.derive_seed`.
    """

    kind: str = field(
        default="gaussian",
        metadata={
            "help": "Sketch family: 'gaussian' (dense N(0,1/m), generated block-wise from the seed), "
            "'sparse_sign' (nnz random ±1/sqrt(nnz) per coordinate, O(nnz) cost) or 'kronecker' "
            "(Γ_out ⊗ Γ_in per linear layer, sketches δ hᵀ without forming it; other parameters Gaussian)."
        },
    )
    dim: int = field(
        default=512, metadata={"help": "Sketch dimension m (a small multiple of the intrinsic dimension)."}
    )
    seed: int = field(
        default=0, metadata={"help": "Seed of the run; all random choices are derived from it."}
    )
    nnz: int = field(
        default=4, metadata={"help": "Non-zeros per input coordinate for kind='sparse_sign' (1-8)."}
    )
    block_rows: int = field(
        default=DEFAULT_BLOCK_ROWS,
        metadata={
            "help": "Rows of a Gaussian Γ generated per step (memory ≈ block_rows*dim*4 bytes); does not change Γ."
        },
    )

    cache_mb: int = field(
        default=256,
        metadata={
            "help": "Keep a Gaussian Γ in memory (per device) when it takes at most this many MiB (r*dim*4 bytes); "
            "larger Γ are regenerated from the seed for every batch. 0 disables caching; does not change Γ."
        },
    )

    def __post_init__(self) -> None:
        allowed = [*USER_KINDS, *(k for k in list_sketches() if k not in USER_KINDS and k != "layerwise")]
        if self.kind not in allowed:
            raise ValueError(
                f"SketchConfig: kind={self.kind!r} is not a sketch kind; choose one of {allowed}."
            )
        check_positive_int("dim", self.dim, "SketchConfig")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"SketchConfig: seed must be an int, got {self.seed!r}.")
        check_positive_int("nnz", self.nnz, "SketchConfig")
        if self.kind == "sparse_sign" and self.nnz > self.dim:
            raise ValueError(
                f"SketchConfig: nnz={self.nnz} exceeds dim={self.dim}; pass nnz <= dim (typically 1-8)."
            )
        check_positive_int("block_rows", self.block_rows, "SketchConfig")
        if isinstance(self.cache_mb, bool) or not isinstance(self.cache_mb, int) or self.cache_mb < 0:
            raise ValueError(
                f"SketchConfig: cache_mb must be an int >= 0, got {self.cache_mb!r}; pass 0 to disable caching."
            )

    def _options(self) -> dict[str, Any]:
        if self.kind == "sparse_sign":
            return {"nnz": self.nnz}
        if self.kind == "gaussian":
            return {"block_rows": self.block_rows, "cache_max_bytes": self.cache_mb * 2**20}
        return {}

    def build(self, in_dim: int, **kwargs: Any) -> Sketch:
        """``make_sketch(kind, in_dim, dim, seed, ...)`` for one flat r-vector.

        For ``kind="kronecker"`` pass the weight shape as ``d_out=..., d_in=...``.
        """
        return make_sketch(self.kind, in_dim, self.dim, self.seed, **{**self._options(), **kwargs})

    def build_layerwise(self, shapes: Mapping[str, Sequence[int]]) -> LayerwiseSketch:
        """A :class:`LayerwiseSketch` over named parameter shapes, part seeds ``derive_seed(seed, name)``."""
        return LayerwiseSketch.from_shapes(
            shapes,
            self.dim,
            seed=self.seed,
            kind=self.kind,
            nnz=self.nnz,
            block_rows=self.block_rows,
            cache_max_bytes=self.cache_mb * 2**20,
        )

"""Johnson–Lindenstrauss sketches Γ ∈ R^{r×m} for per-example gradients (numpy + torch only).

SkMM (Dong et al., NeurIPS 2024, Alg. 3.1 step 1) replaces the N×r gradient matrix G by G Γ ∈ R^{N×m}.
Every sketch here is a fixed linear map ``apply(x) = x Γ`` generated from a seed (same seed ⇒ same Γ on
every machine, batch size and device):

- :class:`GaussianSketch`: i.i.d. N(0, 1/m) entries, generated block-wise (never stores r×m for large r).
- :class:`SparseSignSketch`: ``nnz`` entries ±1/√nnz per input coordinate; O(nnz(x)·nnz) to apply.
- :class:`KroneckerSketch`: Γ_out ⊗ Γ_in for linear-layer gradients Σ_t δ_t h_tᵀ, never forms ΔW.
- :class:`LayerwiseSketch`: several parameter blocks into one m-vector (stacked Γ, outputs summed).

Build them with :func:`make_sketch` or from a user-facing :class:`SketchConfig`.
"""

from hf_skmm.sketch.base import (
    Sketch,
    derive_seed,
    list_sketches,
    make_sketch,
    register_sketch,
    sketch_from_config,
)
from hf_skmm.sketch.config import SketchConfig
from hf_skmm.sketch.gaussian import GEN_CHUNK_ROWS, GaussianSketch
from hf_skmm.sketch.kronecker import KroneckerSketch, kronecker_factors
from hf_skmm.sketch.layerwise import LayerwiseSketch
from hf_skmm.sketch.sparse import SparseSignSketch

__all__ = [
    "GEN_CHUNK_ROWS",
    "GaussianSketch",
    "KroneckerSketch",
    "LayerwiseSketch",
    "Sketch",
    "SketchConfig",
    "SparseSignSketch",
    "derive_seed",
    "kronecker_factors",
    "list_sketches",
    "make_sketch",
    "register_sketch",
    "sketch_from_config",
]

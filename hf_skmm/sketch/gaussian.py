"""Dense Gaussian JL sketch Γ with i.i.d. N(0, 1/m) entries, generated block-wise from the seed.

Γ ∈ R^{r×m} is never stored for large r: its rows are cut into fixed generation chunks of
:data:`GEN_CHUNK_ROWS` rows; chunk k is ``torch.randn(rows_k, m, generator=Generator().manual_seed(
derive_seed(seed, "gaussian", k)))`` drawn on the CPU, then moved to the input's device. Because the
chunking is fixed, Γ is the same whatever ``block_rows`` (how many rows are multiplied at once), batch
size or device, and the same on CPU and CUDA. The 1/√m scale is applied to the [b, m] output.

Cost per batch of b rows: O(b r m) multiply-adds plus O(r m) normal draws (regeneration), memory
O(block_rows · m) floats. Drawing the normals dominates (≈ 10× the b = 64 matmul on a CPU), so when
r·m·4 bytes ≤ ``cache_max_bytes`` (256 MiB by default, i.e. r ≤ 131,072 at m = 512) the dense Γ is generated
once per device and kept; larger Γ are regenerated for every call (memory stays O(block_rows · m)).

Reference: Johnson & Lindenstrauss (1984); Dong et al., "Sketchy Moment Matching", NeurIPS 2024,
Alg. 3.1 step 1 (Gaussian embedding with N(0, 1/m) entries): E‖Γᵀx‖² = ‖x‖².
"""

from __future__ import annotations

import math
from typing import Any

import torch

from hf_skmm.sketch.base import Sketch, _check_seed, check_positive_int, derive_seed, register_sketch

__all__ = ["DEFAULT_BLOCK_ROWS", "DEFAULT_CACHE_MAX_BYTES", "GEN_CHUNK_ROWS", "GaussianSketch"]

#: Rows of Γ drawn from one seeded generator. Part of the seeding rule: changing it changes Γ.
GEN_CHUNK_ROWS = 2048
#: Rows of Γ multiplied per step by default (rounded up to a multiple of GEN_CHUNK_ROWS).
DEFAULT_BLOCK_ROWS = 16384
#: Dense Γ is cached per device when it takes at most this many bytes.
DEFAULT_CACHE_MAX_BYTES = 256 * 2**20


class GaussianSketch(Sketch):
    """Gaussian JL sketch Γ ∈ R^{in_dim × out_dim}, entries i.i.d. N(0, 1/out_dim), generated from ``seed``.

    Args:
        in_dim: r, the input dimension.
        out_dim: m, the sketch dimension. ``m > r`` is allowed (the map is then an injective random
            embedding that does not compress; useful when a tiny layer is sketched to a common m).
        seed: seed of Γ (see the module docstring for the exact generation rule).
        block_rows: rows of Γ generated and multiplied per step; rounded up to a multiple of
            ``GEN_CHUNK_ROWS`` (2048). Memory per step is about ``block_rows · m · 4`` bytes. Does not change Γ.
        cache_max_bytes: keep the dense Γ per device when ``in_dim · out_dim · 4 <= cache_max_bytes``
            (0 disables caching). Does not change Γ.
        skip_zero_blocks: skip generating the Γ rows whose input block is all zero (exact; pays off for
            gradients that are zero on whole parameter blocks).

    Example:
        >>> sk = GaussianSketch(10_000, 64, seed=0)
        >>> sk.apply(torch.randn(8, 10_000)).shape
        torch.Size([8, 64])
    """

    kind = "gaussian"

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        seed: int = 0,
        block_rows: int = DEFAULT_BLOCK_ROWS,
        cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
        skip_zero_blocks: bool = True,
    ) -> None:
        name = type(self).__name__
        self.in_dim = check_positive_int("in_dim", in_dim, name)
        self.out_dim = check_positive_int("out_dim", out_dim, name)
        self.seed = _check_seed(seed, name)
        block_rows = check_positive_int("block_rows", block_rows, name)
        self.block_rows = GEN_CHUNK_ROWS * math.ceil(block_rows / GEN_CHUNK_ROWS)
        if isinstance(cache_max_bytes, bool) or not isinstance(cache_max_bytes, int) or cache_max_bytes < 0:
            raise ValueError(
                f"{name}: cache_max_bytes must be an int >= 0, got {cache_max_bytes!r}; pass 0 to disable caching."
            )
        self.cache_max_bytes = cache_max_bytes
        self.skip_zero_blocks = bool(skip_zero_blocks)
        self._cache: dict[torch.device, torch.Tensor] = {}

    # ----------------------------------------------------------------------------------- generation
    def _chunk_generator(self, k: int) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(derive_seed(self.seed, "gaussian", k))

    def unscaled_rows(self, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``start:stop`` of √m·Γ (standard normal entries) as a float32 CPU tensor.

        ``start`` and ``stop`` must be multiples of ``GEN_CHUNK_ROWS`` (``stop`` may also be ``in_dim``).
        ``out``: optional contiguous float32 CPU buffer of shape ``[stop - start, out_dim]`` to fill (reusing
        one buffer across blocks avoids page-faulting r·m·4 fresh bytes per call).
        """
        if start % GEN_CHUNK_ROWS or (stop % GEN_CHUNK_ROWS and stop != self.in_dim):
            raise ValueError(
                f"unscaled_rows: start={start}, stop={stop} must be multiples of GEN_CHUNK_ROWS={GEN_CHUNK_ROWS} "
                f"(stop may be in_dim={self.in_dim})."
            )
        block = torch.empty(stop - start, self.out_dim, dtype=torch.float32) if out is None else out
        for k in range(start // GEN_CHUNK_ROWS, math.ceil(stop / GEN_CHUNK_ROWS)):
            lo = k * GEN_CHUNK_ROWS
            hi = min(lo + GEN_CHUNK_ROWS, self.in_dim)
            # in-place normal_ draws exactly torch.randn(hi - lo, m, generator=...) (same values), a bit faster
            block[lo - start : hi - start].normal_(generator=self._chunk_generator(k))
        return block

    def _dense(self) -> torch.Tensor:
        return self.unscaled_rows(0, self.in_dim).mul_(1.0 / math.sqrt(self.out_dim))

    def _cached_unscaled(self, device: torch.device) -> torch.Tensor | None:
        if self.in_dim * self.out_dim * 4 > self.cache_max_bytes:
            return None
        if device not in self._cache:
            cpu = self._cache.get(torch.device("cpu"))
            if cpu is None:
                cpu = self.unscaled_rows(0, self.in_dim)
            self._cache[device] = cpu.to(device)
        return self._cache[device]

    def prepare(self, device: torch.device | str = "cpu") -> GaussianSketch:
        """Generate and cache the dense Γ on ``device`` if it fits ``cache_max_bytes`` (else nothing to do)."""
        self._cached_unscaled(torch.device(device))
        return self

    # ---------------------------------------------------------------------------------------- apply
    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device
        scale = 1.0 / math.sqrt(self.out_dim)
        cached = self._cached_unscaled(device)
        if cached is not None:
            return (x.float() @ cached).mul_(scale)
        out = torch.zeros(x.shape[0], self.out_dim, dtype=torch.float32, device=device)
        buffer = torch.empty(min(self.block_rows, self.in_dim), self.out_dim, dtype=torch.float32)
        for start in range(0, self.in_dim, self.block_rows):
            stop = min(start + self.block_rows, self.in_dim)
            xb = x[:, start:stop]
            if self.skip_zero_blocks and not bool(xb.any()):
                continue  # an all-zero block contributes exactly 0 (no NaN can hide in it)
            rows = self.unscaled_rows(start, stop, out=buffer[: stop - start]).to(device)
            out.addmm_(xb.float(), rows)
        return out.mul_(scale)

    def _config_kwargs(self) -> dict[str, Any]:
        return {
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "seed": self.seed,
            "block_rows": self.block_rows,
            "cache_max_bytes": self.cache_max_bytes,
            "skip_zero_blocks": self.skip_zero_blocks,
        }


register_sketch("gaussian", GaussianSketch)

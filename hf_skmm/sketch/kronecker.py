"""Kronecker-structured sketch for per-example gradients of linear layers, Γ = Γ_out ⊗ Γ_in.

A linear layer y_t = W h_t (W ∈ R^{d_out×d_in}) has per-example gradient ΔW = Σ_t δ_t h_tᵀ, a sum of
T outer products (δ_t = ∂loss/∂y_t). With Γ = Γ_out ⊗ Γ_in (Γ_out ∈ R^{d_out×m_out}, Γ_in ∈ R^{d_in×m_in},
i.i.d. N(0, 1/m_out) and N(0, 1/m_in) entries, so Γ's entries have variance 1/(m_out m_in) = 1/m) and the
ROW-MAJOR vectorisation vec_row(ΔW) = ΔW.flatten() (index i·d_in + j):

    vec_row(ΔW) Γ = vec_row(Γ_outᵀ ΔW Γ_in) = vec_row( Σ_t (Γ_outᵀ δ_t)(Γ_inᵀ h_t)ᵀ ),

so the m = m_out·m_in sketch costs O(b T (d_out m_out + d_in m_in + m_out m_in)) and never forms ΔW
(d_out·d_in per example) or the r-vector. E[ΓΓᵀ] = E[Γ_outΓ_outᵀ] ⊗ E[Γ_inΓ_inᵀ] = I, hence E‖Γᵀx‖² = ‖x‖²;
the variance is larger than a dense Gaussian's of the same m (the price of the structure), smallest when
m_out ≈ m_in, which is what :func:`kronecker_factors` picks.

Γ_out and Γ_in are :class:`~hf_skmm.sketch.gaussian.GaussianSketch` matrices seeded with
``derive_seed(seed, "kronecker_out")`` and ``derive_seed(seed, "kronecker_in")``.
A layer's bias gradient Σ_t δ_t is the same formula with h_t extended by a constant 1 (d_in + 1), or a
separate Gaussian part in a :class:`~hf_skmm.sketch.layerwise.LayerwiseSketch`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from hf_skmm.sketch.base import (
    Sketch,
    _check_seed,
    check_finite_output,
    check_positive_int,
    derive_seed,
    register_sketch,
)
from hf_skmm.sketch.gaussian import GaussianSketch

__all__ = ["KroneckerSketch", "kronecker_factors"]


def kronecker_factors(m: int, d_out: int, d_in: int) -> tuple[int, int]:
    """Split a sketch size m into (m_out, m_in) with m_out · m_in = m for a d_out × d_in layer.

    Rule: among the divisor pairs of m, keep those with m_out ≤ d_out and m_in ≤ d_in (projecting a
    factor to more dimensions than it has wastes the budget of the other factor); among them pick the
    most balanced pair (minimal |log m_out − log m_in|, which minimises the Kronecker sketch's
    variance ≈ 2/m_out + 2/m_in for rank-one gradients); ties go to the larger m_in. If no pair fits
    (m > d_out · d_in, or m has no suitable divisor), pick the pair with the smallest overflow
    max(m_out/d_out, m_in/d_in), then the most balanced. Powers of two for m give the most choice.

    Examples: (512, 768, 768) → (16, 32); (512, 2, 768) → (2, 256); (1024, 768, 3072) → (32, 32).

    Args:
        m: total sketch size (> 0).
        d_out: output features of the layer (rows of W).
        d_in: input features of the layer (columns of W).

    Returns:
        ``(m_out, m_in)``.
    """
    m = check_positive_int("m", m, "kronecker_factors")
    d_out = check_positive_int("d_out", d_out, "kronecker_factors")
    d_in = check_positive_int("d_in", d_in, "kronecker_factors")
    pairs = [(a, m // a) for a in range(1, m + 1) if m % a == 0]

    def balance(p: tuple[int, int]) -> tuple[float, int]:
        return (abs(math.log(p[0]) - math.log(p[1])), p[0])  # ties: smaller m_out, i.e. larger m_in

    fitting = [p for p in pairs if p[0] <= d_out and p[1] <= d_in]
    if fitting:
        return min(fitting, key=balance)
    return min(pairs, key=lambda p: (max(p[0] / d_out, p[1] / d_in), *balance(p)))


class KroneckerSketch(Sketch):
    """Γ = Γ_out ⊗ Γ_in ∈ R^{(d_out·d_in) × (m_out·m_in)} for row-major vectorised d_out × d_in gradients.

    Args:
        d_out: rows of the weight (output features).
        d_in: columns of the weight (input features).
        m_out: sketch size of the output side.
        m_in: sketch size of the input side. ``out_dim = m_out * m_in``; m_out > d_out or m_in > d_in is
            allowed (non-compressing factor) but :func:`kronecker_factors` avoids it.
        seed: seed of Γ_out and Γ_in.

    Layout: input index ``i * d_in + j`` ↔ ΔW[i, j] (``ΔW.flatten()``); output index ``a * m_in + c`` ↔
    (Γ_outᵀ ΔW Γ_in)[a, c].
    """

    kind = "kronecker"

    def __init__(self, d_out: int, d_in: int, m_out: int, m_in: int, seed: int = 0) -> None:
        name = type(self).__name__
        self.d_out = check_positive_int("d_out", d_out, name)
        self.d_in = check_positive_int("d_in", d_in, name)
        self.m_out = check_positive_int("m_out", m_out, name)
        self.m_in = check_positive_int("m_in", m_in, name)
        self.seed = _check_seed(seed, name)
        self.in_dim = self.d_out * self.d_in
        self.out_dim = self.m_out * self.m_in
        self.out_factor = GaussianSketch(self.d_out, self.m_out, seed=derive_seed(self.seed, "kronecker_out"))
        self.in_factor = GaussianSketch(self.d_in, self.m_in, seed=derive_seed(self.seed, "kronecker_in"))
        self._factors: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def factors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(Γ_out [d_out, m_out], Γ_in [d_in, m_in])`` as float32 tensors on ``device`` (cached)."""
        device = torch.device(device)
        if device not in self._factors:
            cpu = self._factors.get(torch.device("cpu"))
            if cpu is None:
                cpu = (self.out_factor.dense(), self.in_factor.dense())
                self._factors[torch.device("cpu")] = cpu
            self._factors[device] = (cpu[0].to(device), cpu[1].to(device))
        return self._factors[device]

    def prepare(self, device: torch.device | str = "cpu") -> KroneckerSketch:
        """Generate Γ_out and Γ_in on ``device`` now."""
        self.factors(device)
        return self

    def _dense(self) -> torch.Tensor:
        g_out, g_in = self.factors("cpu")
        return torch.kron(g_out, g_in)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        g_out, g_in = self.factors(x.device)
        b = x.shape[0]
        w = x.reshape(b, self.d_out, self.d_in).float()
        # row-major vec: x[b, i*d_in + j] = ΔW[b, i, j]; sketch = Γ_outᵀ ΔW Γ_in, flattened row-major
        out = torch.matmul(g_out.T, torch.matmul(w, g_in))  # [b, m_out, m_in]
        return out.reshape(b, self.out_dim)

    def apply_factors(
        self,
        delta: torch.Tensor | np.ndarray,
        h: torch.Tensor | np.ndarray,
        mask: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Sketch ΔW = Σ_t mask_t δ_t h_tᵀ per example without forming it.

        Computes vec_row( Σ_t mask_t (Γ_outᵀ δ_t)(Γ_inᵀ h_t)ᵀ ) = vec_row(ΔW) Γ with float32 accumulation.

        Args:
            delta: ``[b, T, d_out]`` output-side factors (∂loss/∂y_t), or ``[b, d_out]`` for T = 1.
            h: ``[b, T, d_in]`` input activations, or ``[b, d_in]`` for T = 1.
            mask: optional ``[b, T]`` weights (bool or float; e.g. the attention mask) multiplying each t.

        Returns:
            float32 ``[b, m_out * m_in]`` on ``delta``'s device.
        """
        name = f"{type(self).__name__}.apply_factors"
        d = _factor_tensor(delta, "delta", self.d_out, name)
        hh = _factor_tensor(h, "h", self.d_in, name)
        if d.shape[:2] != hh.shape[:2]:
            raise ValueError(
                f"{name}: delta has batch/time shape {tuple(d.shape[:2])} but h has {tuple(hh.shape[:2])}; "
                "both must be [b, T, ...] for the same examples and positions."
            )
        g_out, g_in = self.factors(d.device)
        a = torch.matmul(d.float(), g_out)  # [b, T, m_out]
        c = torch.matmul(hh.to(d.device).float(), g_in)  # [b, T, m_in]
        if mask is not None:
            mk = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
            if mk.dim() == 1 and d.shape[1] == 1:
                mk = mk.unsqueeze(1)
            if tuple(mk.shape) != tuple(d.shape[:2]):
                raise ValueError(
                    f"{name}: mask must have shape [b, T] = {tuple(d.shape[:2])}, got {tuple(mk.shape)}; "
                    "pass the attention mask of the same batch (or None)."
                )
            a = a * mk.to(device=a.device, dtype=torch.float32).unsqueeze(-1)
        out = torch.matmul(a.transpose(1, 2), c).reshape(d.shape[0], self.out_dim)
        return check_finite_output(out, type(self).__name__, name="delta/h")

    def _config_kwargs(self) -> dict[str, Any]:
        return {
            "d_out": self.d_out,
            "d_in": self.d_in,
            "m_out": self.m_out,
            "m_in": self.m_in,
            "seed": self.seed,
        }


def _factor_tensor(x: Any, arg: str, dim: int, owner: str) -> torch.Tensor:
    """``x`` as a [b, T, dim] floating tensor ([b, dim] is read as T = 1)."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    if not t.dtype.is_floating_point:
        raise TypeError(f"{owner}: {arg} must be floating point, got {t.dtype}; convert it with .float().")
    if t.dim() == 2:
        t = t.unsqueeze(1)
    if t.dim() != 3 or t.shape[-1] != dim:
        raise ValueError(
            f"{owner}: {arg} must have shape [b, T, {dim}] or [b, {dim}], got {tuple(x.shape)}; check which "
            "layer this sketch was built for (d_out for delta, d_in for h)."
        )
    return t


def _build_kronecker(
    in_dim: int,
    out_dim: int,
    seed: int = 0,
    d_out: int | None = None,
    d_in: int | None = None,
    m_out: int | None = None,
    m_in: int | None = None,
) -> KroneckerSketch:
    """``make_sketch("kronecker", in_dim, out_dim, seed, d_out=..., d_in=...)`` builder."""
    in_dim = check_positive_int("in_dim", in_dim, "make_sketch('kronecker')")
    out_dim = check_positive_int("out_dim", out_dim, "make_sketch('kronecker')")
    if d_out is None and d_in is None:
        raise ValueError(
            "make_sketch('kronecker'): pass the weight shape as d_out=... and d_in=... (in_dim = d_out * d_in); "
            f"got neither for in_dim={in_dim}."
        )
    if d_out is None:
        d_out = in_dim // d_in
    if d_in is None:
        d_in = in_dim // d_out
    if d_out * d_in != in_dim:
        raise ValueError(
            f"make_sketch('kronecker'): d_out * d_in = {d_out} * {d_in} = {d_out * d_in} must equal in_dim={in_dim}; "
            "pass the weight's shape."
        )
    if m_out is None and m_in is None:
        m_out, m_in = kronecker_factors(out_dim, d_out, d_in)
    elif m_out is None or m_in is None:
        known = m_out if m_out is not None else m_in
        if out_dim % known:
            raise ValueError(
                f"make_sketch('kronecker'): out_dim={out_dim} is not divisible by the given factor {known}; "
                "pass m_out and m_in with m_out * m_in = out_dim."
            )
        m_out, m_in = (known, out_dim // known) if m_out is not None else (out_dim // known, known)
    if m_out * m_in != out_dim:
        raise ValueError(
            f"make_sketch('kronecker'): m_out * m_in = {m_out} * {m_in} must equal out_dim={out_dim}; "
            "omit m_out/m_in to let kronecker_factors choose."
        )
    return KroneckerSketch(d_out, d_in, m_out, m_in, seed=seed)


register_sketch("kronecker", KroneckerSketch, builder=_build_kronecker)

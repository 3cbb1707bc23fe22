"""Coreset selection on an N×m sketch matrix (numpy / scipy / torch only).

    from hf_skmm.selection import select, list_selectors
    res = select(sketches, n=100, method="skmm", seed=0)   # sketches: numpy or torch [N, m]
    res.indices, res.weights, res.info["c_s_achieved"]

Every built-in selector lives in its own module and registers itself on import (see CONTRIBUTING.md).
"""

from __future__ import annotations

# built-in selectors: importing a module runs its register_selector(...) line
from hf_skmm.selection import (  # noqa: F401
    adaptive,
    herding,
    kcenter,
    leverage,
    ridge_leverage,
    skmm,
    uncertainty,
    uniform,
)
from hf_skmm.selection.api import allocate_quotas, select
from hf_skmm.selection.diagnostics import Spectrum, achieved_c_s, compute_spectrum, spectrum_coverage
from hf_skmm.selection.registry import list_selectors, register_selector
from hf_skmm.selection.result import SelectionResult
from hf_skmm.selection.skmm import C_S_SCHEDULE, select_skmm, skmm_gradient, skmm_objective

__all__ = [
    "C_S_SCHEDULE",
    "SelectionResult",
    "Spectrum",
    "achieved_c_s",
    "allocate_quotas",
    "compute_spectrum",
    "list_selectors",
    "register_selector",
    "select",
    "select_skmm",
    "skmm_gradient",
    "skmm_objective",
    "spectrum_coverage",
]

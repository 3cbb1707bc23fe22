"""Input validation shared by every selector: one place that turns "any N×m array" into numpy.

Every selector receives a 2-D, finite, C-contiguous numpy array of dtype float32 or float64. Torch
tensors (CPU or CUDA, any float dtype) are moved to host memory; a CPU float32/float64 tensor is viewed
without a copy, so a 1e6×256 float32 matrix costs no extra memory here. torch is never imported by this
module: a tensor is recognised through ``sys.modules`` so ``import hf_skmm.selection`` stays cheap.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

BLOCK_ROWS = 32768  # rows per block for streamed O(N m^2) products: 32768 x 256 x 8 B = 64 MiB


def row_blocks(num_rows: int, block_rows: int = BLOCK_ROWS) -> Iterator[slice]:
    """Yield consecutive row slices covering ``range(num_rows)``."""
    for start in range(0, num_rows, block_rows):
        yield slice(start, min(start + block_rows, num_rows))


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Convert a numpy array / torch tensor / nested list to a numpy array (no copy when possible)."""
    if _is_tensor(x):
        t = x.detach()
        if t.is_floating_point() and t.dtype not in (
            sys.modules["torch"].float32,
            sys.modules["torch"].float64,
        ):
            t = t.float()  # float16 / bfloat16: numpy has no bfloat16
        return t.cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    raise TypeError(
        f"{name} must be a numpy array or a torch tensor of shape [N, m]; got {type(x).__name__}. "
        f"Convert it with numpy.asarray(...) or torch.as_tensor(...)."
    )


def as_sketch_matrix(sketches: Any, name: str = "sketches") -> np.ndarray:
    """Validate ``sketches`` and return it as a 2-D float32/float64 C-contiguous numpy array.

    Non-finite values are *not* checked here (see :func:`nonfinite_rows`): that costs a pass over the
    data and :func:`hf_skmm.selection.select` decides what to do with such rows.

    Raises:
        TypeError: not an array / tensor, or a non-numeric dtype.
        ValueError: not 2-D, or an empty dimension.
    """
    x = to_numpy(sketches, name)
    if x.dtype == np.float16:
        x = x.astype(np.float32)
    elif x.dtype.kind in "biu":
        x = x.astype(np.float64)
    elif x.dtype.kind != "f":
        raise TypeError(f"{name} must hold real numbers; got dtype {x.dtype}. Pass a float32/float64 array.")
    if x.ndim != 2:
        hint = (
            f" If every example has a single feature, pass {name}.reshape(-1, 1)."
            if x.ndim == 1
            else " Flatten the trailing dimensions: x.reshape(len(x), -1)."
        )
        raise ValueError(
            f"{name} must be a 2-D array [N, m] (one sketch per row); got shape {x.shape}.{hint}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column; got shape {x.shape}.")
    return np.ascontiguousarray(x)


def nonfinite_rows(x: np.ndarray) -> np.ndarray:
    """Indices of rows containing NaN or ±inf (streamed: no N×m boolean temporary)."""
    bad = [np.flatnonzero(~np.isfinite(x[blk]).all(axis=1)) + blk.start for blk in row_blocks(len(x))]
    return np.concatenate(bad) if bad else np.zeros(0, dtype=np.int64)


def check_n(n: Any, num_rows: int, name: str = "n") -> int:
    """Validate the coreset size: an integer with 1 <= n <= num_rows."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an integer coreset size; got {n!r} ({type(n).__name__}).")
    n = int(n)
    if n <= 0:
        raise ValueError(f"{name} must be a positive number of examples to select; got {name}={n}.")
    if n > num_rows:
        raise ValueError(
            f"{name}={n} exceeds the number of selectable rows N={num_rows}; pass {name} <= {num_rows} "
            f"(n == N returns every row)."
        )
    return n


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}.")
    return int(seed)


def row_aligned(x: Any, num_rows: int, name: str) -> np.ndarray:
    """A per-example array (labels, probabilities, ...) whose first dimension must be N."""
    arr = to_numpy(x, name)
    if arr.ndim == 0 or arr.shape[0] != num_rows:
        raise ValueError(
            f"{name} must have one entry per row of sketches (first dimension {num_rows}); got shape {arr.shape}."
        )
    return arr

"""Deterministic weights and inputs for pcm-AstroMAE from an integer hash (no RNG library involved).

The published checkpoint is not in this repository; ``tests/fixtures/astromae/forward_fixture.json``
records what the published code computes for hash-made weights and inputs, and its ``recipe``
entry specifies the hash. This module implements that recipe with vectorised numpy ``uint64``
arithmetic, so tests get reproducible, realistic weights without a checkpoint. See docs/model.md.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

_MASK = np.uint64(0xFFFFFFFF)
_GOLDEN = 0x9E3779B9
_MIX = np.uint64(0x45D9F3B)
_SHIFT = np.uint64(16)
_SHARED_ALIAS = ("inception_model.vis_inception.0.", "inception_model.conv2d_init.")


def hash_unit(t: np.ndarray | int, j: int) -> np.ndarray:
    """``hash(t, j)`` of the recipe for integer array ``t`` (>= 0): float64 values in [-1, 1). Exact 64-bit
    unsigned arithmetic; every intermediate product stays below 2**59."""
    t_arr = np.asarray(t, dtype=np.uint64)
    if j < 0:
        raise ValueError(f"hash index j must be >= 0, got {j}")
    x = (t_arr + np.uint64(j * _GOLDEN)) & _MASK
    x = ((x ^ (x >> _SHIFT)) * _MIX) & _MASK
    x = ((x ^ (x >> _SHIFT)) * _MIX) & _MASK
    x = x ^ (x >> _SHIFT)
    return x.astype(np.float64) / 2.0**31 - 1.0


def _entry_values(key: str, shape: tuple[int, ...], j: int) -> np.ndarray:
    """float64 values of state_dict entry number ``j`` (before the cast to its dtype)."""
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    s = hash_unit(np.arange(n, dtype=np.uint64), j)
    if key.endswith("running_var"):
        v = 1.0 + 0.5 * np.abs(s)
    elif key.endswith("running_mean"):
        v = 0.1 * s
    elif len(shape) >= 2:
        v = s * np.sqrt(6.0 / (n / shape[0]))
    elif key.endswith(".weight"):
        v = 1.0 + 0.1 * s
    else:
        v = 0.05 * s
    return v.reshape(shape)


def fixture_state_dict(reference: Mapping[str, Tensor]) -> OrderedDict[str, Tensor]:
    """Recipe values for every entry of ``reference`` (``build_model().state_dict()``: keys, order, shapes, dtypes)."""
    keys = list(reference)
    index = {k: j for j, k in enumerate(keys)}
    out: OrderedDict[str, Tensor] = OrderedDict()
    for j, key in enumerate(keys):
        ref = reference[key]
        shape = tuple(ref.shape)
        if not ref.dtype.is_floating_point:
            out[key] = torch.zeros(shape, dtype=ref.dtype)
            continue
        source_key, source_j = key, j
        alias, target = _SHARED_ALIAS
        if key.startswith(alias):
            source_key = target + key[len(alias) :]
            if source_key not in index:
                raise KeyError(f"shared-module alias {key} has no counterpart {source_key}")
            source_j = index[source_key]
        values = _entry_values(source_key, shape, source_j)
        out[key] = torch.from_numpy(np.ascontiguousarray(values)).to(ref.dtype)
    return out


def fixture_inputs(batch: int = 8) -> tuple[Tensor, Tensor]:
    """Recipe inputs: image float32 ``[batch, 5, 32, 32]`` and magnitude float64 ``[batch, 5]`` (fixture: 8).
    The hash index is the flat row-major position, so any batch size gives the same leading samples."""
    n_img = batch * 5 * 32 * 32
    image = hash_unit(np.arange(n_img, dtype=np.uint64), 1001).reshape(batch, 5, 32, 32)
    magnitude = 17.0 + 2.0 * hash_unit(np.arange(batch * 5, dtype=np.uint64), 1002).reshape(batch, 5)
    return torch.from_numpy(image.astype(np.float32)), torch.from_numpy(magnitude)

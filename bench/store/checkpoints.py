"""Training checkpoints: the file a killed fold resumes from (``<run dir>/checkpoint.pt``).

Tensors and plain data only, read with ``torch.load(weights_only=True)`` so a planted file cannot run
code; the RNG states (Python, NumPy, torch, CUDA) are stored as tensors. The training engine
(:mod:`bench.train.engine`) fills and applies the state; ``bench results verify`` reads the epoch a
checkpoint stopped at.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench._core.files import atomic_path

CHECKPOINT_FORMAT = 2


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed (the message says why)."""


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The training state saved in ``path``, loaded without running any of its code, or a CheckpointError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, truncated zip, unreadable file: all unusable
        raise CheckpointError(f"cannot be loaded safely: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") \
            from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"not a survbench checkpoint of format {CHECKPOINT_FORMAT}")
    kinds = {"model": dict, "optimizer": dict, "order_gen": torch.Tensor, "cap_gen": torch.Tensor, "rng": dict,
             "predictions": dict, "epochs": list, "epoch": int}
    for key, kind in kinds.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"its '{key}' entry is missing or not a {kind.__name__}")
    if state["epoch"] < 1 or len(state["epochs"]) != state["epoch"]:
        raise CheckpointError(f"epoch {state['epoch']} does not match its {len(state['epochs'])} logged epoch(s)")
    return state


def rng_state() -> dict[str, Any]:
    """The Python, NumPy, torch (and CUDA) RNG states, as tensors and plain data."""
    version, internal, gauss = random.getstate()
    _name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the RNG states saved by :func:`rng_state`."""
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Save a training state (see :func:`read_checkpoint` for what it holds) atomically."""
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)

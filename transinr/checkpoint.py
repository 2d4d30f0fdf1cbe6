"""Checkpoints: written atomically, read without executing code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
``torch.load(weights_only=True)`` can read it: a file from a stranger cannot run
code on load. It is written to a temporary file in the same folder, flushed to
disk and renamed over the old one, so a kill at any moment leaves either the
previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, unsafe, or for another model."""


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def safe_load(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; refuse anything that needs code to load."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it contains objects that would need code to be run to "
            f"unpickle them, which a weights-only checkpoint never does. If you trust the file "
            f"completely, convert it yourself; transinr will not execute it. ({error})"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from None


def load_state_strict(module: torch.nn.Module, state: dict, source: str) -> None:
    """``load_state_dict`` with an error that names the first mismatched parameter."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}. "
            f"Was it trained with another config?"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"{source}: parameter {key!r} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in this model — the checkpoint comes from another config"
            )
    module.load_state_dict(state)


def rng_state() -> dict:
    """Every random generator training touches, in weights-only-loadable form."""
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuple(state["python"]))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_plain(state) -> dict:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from_plain(state: dict):
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached"])


def _to_tuple(value):
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_to_tuple(v) for v in value)
    return value

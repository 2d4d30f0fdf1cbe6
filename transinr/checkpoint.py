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
import re
import tempfile
from pathlib import Path

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, unsafe, or for another model."""


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete half-written temporaries of ``path`` that a killed :func:`atomic_save` left.

    Only call this when no other process is saving to ``path``. Returns what was removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f"{_temporary_prefix(path)}*.tmp"))
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return stale


def first_non_finite(state: dict) -> str | None:
    """The name of the first floating-point tensor in ``state`` holding NaN or inf, else None."""
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            return name
    return None


def safe_load(path: str | Path, map_location="cpu", expected_format: str | None = None) -> dict:
    """Load a checkpoint with ``weights_only=True``; refuse anything that needs code to load.

    Raises :class:`CheckpointError` for a missing, empty, truncated or foreign file, for
    a pickle that names functions or classes (which a weights-only checkpoint never
    does: such a file is refused before any of it runs), for anything that is not a
    dict, and, when ``expected_format`` is given, for a dict of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain weights-only checkpoint, and unpickling "
            f"it could run code ({_unpickling_reason(error)}). transinr never executes such a "
            f"file; if you trust its source completely, convert it to plain tensors yourself."
        ) from None
    except MemoryError:
        raise
    except Exception as error:  # a truncated zip, a text file, another program's format
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is not a complete PyTorch checkpoint "
            f"({type(error).__name__}: {first_line}); was it cut short while copying?"
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    if expected_format is not None and checkpoint.get("format") != expected_format:
        raise CheckpointError(
            f"{path} is not a transinr checkpoint (format {checkpoint.get('format')!r}, "
            f"expected {expected_format!r})"
        )
    if expected_format is not None:
        _check_model_entries(checkpoint, path)
    return checkpoint


# What every transinr checkpoint holds for its model (image_size is bounded by build_model_for).
MODEL_ENTRIES = {"model": dict, "config": dict, "step": int}


def _check_model_entries(checkpoint: dict, path: Path) -> None:
    """CheckpointError naming the first entry a model needs that is missing or of another type."""
    for key, kind in MODEL_ENTRIES.items():
        if key not in checkpoint:
            raise CheckpointError(f"{path}: the checkpoint has no {key!r} entry; the file is damaged or "
                                  f"was not written by transinr")
        value = checkpoint[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path}: the checkpoint's {key!r} entry is a {type(value).__name__}, "
                                  f"expected a {kind.__name__}")


def _unpickling_reason(error: Exception) -> str:
    """The one line of torch's weights-only refusal that says what was blocked."""
    for line in str(error).splitlines():
        if "GLOBAL" in line or "Unsupported operand" in line:
            line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
            line = line.removeprefix("WeightsUnpickler error:").strip()
            return line.split(". Please use")[0].rstrip(".")
    return "it needs objects beyond tensors, numbers, strings, lists and dicts"


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


# Limits on what a model file may declare, checked before anything is allocated: the
# paper's 178 px models have 44.5 million parameters.
MAX_IMAGE_SIZE = 4096
MAX_PARAMETERS = 2_000_000_000
WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def build_model_for(config, image_size, state: dict, source: str) -> torch.nn.Module:
    """The model a file declares (config, image size), loaded with its weights ``state``.

    The declared sizes are checked against :data:`MAX_IMAGE_SIZE` and
    :data:`MAX_PARAMETERS` on a model built without memory (the meta device), and every
    weight's dtype, shape and finiteness is checked, before the real model is allocated.
    Each failure is a :class:`CheckpointError` naming ``source``.
    """
    from .models import build_model

    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 1 <= image_size <= MAX_IMAGE_SIZE:
        raise CheckpointError(f"{source} declares image_size {image_size!r}; expected an integer "
                              f"from 1 to {MAX_IMAGE_SIZE}")
    with torch.device("meta"):
        shapes = build_model(config, image_size).state_dict()
    count = sum(value.numel() for value in shapes.values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"{source} declares a model of {count:,} parameters; the limit is "
                              f"{MAX_PARAMETERS:,} (checkpoint.MAX_PARAMETERS)")
    for name, value in state.items():
        if not torch.is_tensor(value) or value.dtype not in WEIGHT_DTYPES:
            kind = value.dtype if torch.is_tensor(value) else type(value).__name__
            raise CheckpointError(f"{source}: weight {name!r} is {kind}; expected floating-point weights")
    load_state_strict(_ShapesOnly(shapes), state, source)  # names the first mismatch, allocates nothing
    bad = first_non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{source}: weight {bad!r} holds NaN or inf")
    model = build_model(config, image_size)
    load_state_strict(model, state, source)
    return model


class _ShapesOnly(torch.nn.Module):
    """Stands for a model in :func:`load_state_strict`'s key and shape comparison."""

    def __init__(self, shapes: dict):
        super().__init__()
        self._shapes = shapes

    def state_dict(self, *args, **kwargs):
        return self._shapes

    def load_state_dict(self, state, strict=True, assign=False):
        return None


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

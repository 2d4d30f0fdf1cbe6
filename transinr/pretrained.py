"""Shipped pretrained models: small fp16 safetensors files with their config inside.

A safetensors file is only tensors plus a string-to-string header, so loading one can
never run code. ``export_pretrained`` turns a trained model into such a file;
``load_pretrained("emoji32")`` finds a shipped one by name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .checkpoint import CheckpointError, build_model_for
from .config import stored_config

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def export_pretrained(source: str | Path, out_path: str | Path, dtype=torch.float16,
                      results: dict | None = None) -> Path:
    """A trained model → fp16 safetensors with config, image size, step and results.

    ``source`` is anything :func:`transinr.trained.load_trained` resolves: a run folder, a
    checkpoint (read weights-only), a shipped name or a .safetensors file. ``results``
    defaults to the model's own (its run's ``results.json``, or a shipped model's).
    """
    from .trained import load_trained

    return write_safetensors(load_trained(source), out_path, dtype, results)


def write_safetensors(trained, out_path: str | Path, dtype=torch.float16, results: dict | None = None) -> Path:
    """Write a :class:`transinr.trained.TrainedModel` as a shipped-model file at ``out_path``."""
    tensors = {name: value.detach().to(dtype).contiguous() for name, value in trained.model.state_dict().items()}
    metadata = {"config": json.dumps(trained.stored_config), "image_size": str(trained.image_size),
                "step": str(trained.step), "results": json.dumps(trained.results if results is None else results)}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_path), metadata=metadata)
    return out_path


def pretrained_path(name: str | Path) -> Path:
    path = Path(name)
    if path.suffix == ".safetensors" and path.is_file():
        return path
    shipped = PRETRAINED_DIR / f"{name}.safetensors"
    if shipped.is_file():
        return shipped
    available = ", ".join(sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))) or "none"
    raise FileNotFoundError(f"no pretrained model {str(name)!r} (shipped: {available})")


def read_metadata(path: str | Path) -> dict:
    """The header of a .safetensors file; CheckpointError naming it when unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            return dict(file.metadata() or {})
    except Exception as error:  # the library's own error types for a truncated or foreign file
        raise CheckpointError(f"cannot read {path}: not a complete safetensors file "
                              f"({type(error).__name__}: {str(error).strip()[:200]})") from None


def _header_json(metadata: dict, key: str, path: Path):
    try:
        return json.loads(metadata[key])
    except KeyError:
        raise CheckpointError(f"{path} has no {key!r} in its header; is it a transinr model?") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: header entry {key!r} is not JSON ({error})") from None


def load_pretrained(name: str | Path, device="cpu"):
    """(model in eval mode, config, metadata) from a shipped name or a .safetensors path."""
    path = pretrained_path(name)
    metadata = read_metadata(path)
    config_values = _header_json(metadata, "config", path)
    config = stored_config(config_values, where=f"{path} config")
    image_size = _header_json(metadata, "image_size", path)
    try:
        state = load_file(str(path))
    except Exception as error:
        raise CheckpointError(f"cannot read the weights of {path} ({type(error).__name__}: {error})") from None
    model = build_model_for(config, image_size, state, str(path))
    metadata["results"] = _header_json(metadata, "results", path) if metadata.get("results") else {}
    return model.to(device).eval(), config, metadata


def load_or_train(name: str, config_name: str | None = None, max_images: int = 2048,
                  run_dir: str | Path | None = None, device="cpu"):
    """A shipped model by name, or — when that file is missing — a small one trained live.

    The fallback trains ``config_name`` (default: ``name``) for ``max_images`` training
    signals, so a notebook still runs top to bottom, just with a weaker model.
    Returns (model in eval mode, config, metadata).
    """
    import tempfile

    from .config import load_config
    from .train import load_model_from_checkpoint, train

    try:
        return load_pretrained(name, device)
    except FileNotFoundError:
        pass
    config = load_config(config_name or name, [f"train.max_images={max_images}", "train.eval_every=null"])
    print(f"no shipped model {name!r}: training {config.name} live on {max_images} signals")
    with tempfile.TemporaryDirectory(prefix=f"transinr-{config.name}-") as scratch:
        folder = Path(run_dir) if run_dir else Path(scratch)
        train(config, folder, device=str(device), evaluate_at_end=False)
        model, config, checkpoint = load_model_from_checkpoint(folder / "checkpoint.pt", device)
    return model.eval(), config, {"step": str(checkpoint["step"]), "results": {}, "trained_live": "1"}


def with_data_settings(trained, overrides: list[str]):
    """``trained`` with ``data.*`` overrides applied to the config it ships with.

    Only the data settings may change: they say where the data is, not what the model
    computes. Each change is printed; a key outside ``data`` is a ConfigError."""
    import copy
    import dataclasses

    from .config import ConfigError, _merge, parse_overrides

    values = parse_overrides(overrides)
    if set(values) - {"data"}:
        raise ConfigError(f"export --data changes data.* settings only; got {', '.join(sorted(set(values) - {'data'}))}")
    stored = _merge(copy.deepcopy(trained.stored_config), values)
    config = stored_config(stored, f"{trained.path} with {' '.join(overrides)}")
    for key, value in values["data"].items():
        print(f"data.{key}: {trained.stored_config.get('data', {}).get(key)!r} → {value!r}")
    return dataclasses.replace(trained, config=config, stored_config=stored)


def export_stem(name: str) -> str:
    """A file stem that stays inside the output folder, whatever the checkpoint calls itself:
    path separators, ``..`` and other characters become ``_``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    if not stem:
        raise ValueError(f"cannot make a file name from {name!r}; give NAME explicitly")
    return stem


def cli_main(argv: list[str] | None = None) -> None:
    """``python -m transinr export MODEL [NAME]``: ship a trained model as a small fp16
    safetensors file (MODEL: a run folder, a checkpoint, a shipped name or a .safetensors file)."""
    import argparse

    from .trained import load_trained

    parser = argparse.ArgumentParser(prog="transinr export", description=cli_main.__doc__)
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("name", nargs="?", help="file stem (default: the config's name, or the shipped name)")
    parser.add_argument("--out-dir", default=str(PRETRAINED_DIR))
    parser.add_argument("--force", action="store_true", help="overwrite an existing file (a shipped model too)")
    parser.add_argument("--data", nargs="+", default=[], metavar="data.KEY=VALUE",
                        help="where the shipped model's data is found on another machine, e.g. "
                             "data.root=null data.n_objects=1000 for a run trained on a folder that "
                             "'build-3d --objects 1000' wrote (the same objects and split)")
    args = parser.parse_args(argv)
    trained = load_trained(args.model)
    if args.data:
        trained = with_data_settings(trained, args.data)
    # The name a checkpoint gives itself is data: sanitised, so the file stays in --out-dir.
    name = export_stem(args.name or trained.name)
    path = Path(args.out_dir) / f"{name}.safetensors"
    if path.exists() and not args.force:
        shipped = " (a shipped model)" if path.resolve().parent == PRETRAINED_DIR.resolve() else ""
        raise FileExistsError(f"{path} exists{shipped}; pass --force to overwrite it, or choose another "
                              f"NAME or --out-dir")
    path = write_safetensors(trained, path)
    print(f"{path} ({path.stat().st_size / 2**20:.2f} MiB)")

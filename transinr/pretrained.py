"""Shipped pretrained models: small fp16 safetensors files with their config inside.

A safetensors file is only tensors plus a string-to-string header, so loading one can
never run code. ``export_pretrained`` turns a training checkpoint into such a file;
``load_pretrained("emoji32")`` finds a shipped one by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .checkpoint import CheckpointError, load_state_strict
from .config import config_from_dict

PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def export_pretrained(checkpoint_path: str | Path, out_path: str | Path, dtype=torch.float16,
                      results: dict | None = None) -> Path:
    """Checkpoint (weights-only) → fp16 safetensors with config, image size and results."""
    from .train import load_model_from_checkpoint

    model, config, checkpoint = load_model_from_checkpoint(checkpoint_path)
    tensors = {name: value.detach().to(dtype).contiguous() for name, value in model.state_dict().items()}
    metadata = {"config": json.dumps(checkpoint["config"]), "image_size": str(checkpoint["image_size"]),
                "step": str(checkpoint["step"]), "results": json.dumps(results or {})}
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
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        return dict(file.metadata() or {})


def load_pretrained(name: str | Path, device="cpu"):
    """(model in eval mode, config, metadata) from a shipped name or a .safetensors path."""
    from .models import build_model

    path = pretrained_path(name)
    metadata = read_metadata(path)
    if "config" not in metadata:
        raise CheckpointError(f"{path} has no transinr config in its header")
    config = config_from_dict(json.loads(metadata["config"]), where=f"{path} config")
    model = build_model(config, int(metadata["image_size"]))
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    load_state_strict(model, state, str(path))
    metadata["results"] = json.loads(metadata.get("results", "{}"))
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


def cli_main(argv: list[str] | None = None) -> None:
    """``python -m transinr export CHECKPOINT [NAME]``: ship a run as a pretrained model."""
    import argparse

    parser = argparse.ArgumentParser(prog="transinr export", description=cli_main.__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("name", nargs="?", help="file stem (default: the config's name)")
    parser.add_argument("--out-dir", default=str(PRETRAINED_DIR))
    args = parser.parse_args(argv)
    from .checkpoint import safe_load

    checkpoint = safe_load(args.checkpoint)
    results_path = Path(args.checkpoint).parent / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    name = args.name or checkpoint["config"]["name"]
    path = export_pretrained(args.checkpoint, Path(args.out_dir) / f"{name}.safetensors", results=results)
    print(f"{path} ({path.stat().st_size / 2**20:.2f} MiB)")

"""A trained model, named the way a user names it: the one resolver every command uses.

A *model source* is any of

* a run folder (``runs/emoji32_demo``): its ``checkpoint.pt``;
* a training checkpoint (``runs/emoji32_demo/checkpoint.pt``);
* a shipped model's name (``emoji32``, one of ``transinr/pretrained/*.safetensors``);
* a ``.safetensors`` file written by ``python -m transinr export``.

``evaluate``, ``export``, ``figures`` and ``train --init`` all go through
:func:`load_trained`, so a shipped model goes wherever a checkpoint goes. (``compare``
takes configs, not trained models: it trains each one on the same budget.)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import Config


@dataclass
class TrainedModel:
    """A loaded model and what is known about how it was trained."""

    model: torch.nn.Module
    config: Config
    source: str  # as the user gave it
    kind: str  # "checkpoint" | "shipped"
    path: Path  # the file read
    step: int  # optimisation steps it was trained for
    image_size: int
    stored_config: dict  # the config as saved with the weights
    train_seconds: float | None = None
    results: dict = field(default_factory=dict)  # its run's results.json, when known

    @property
    def name(self) -> str:
        """A short label: the shipped name, else the run's config name."""
        return self.path.stem if self.kind == "shipped" else self.config.name

    @property
    def training_signals(self) -> int:
        """Signals seen in training: steps × batch size."""
        return self.step * self.config.train.batch_size


def resolve_model_path(source: str | Path) -> tuple[str, Path]:
    """("checkpoint" | "shipped", file) for a model source; FileNotFoundError naming the forms."""
    from .pretrained import PRETRAINED_DIR, pretrained_path
    from .train import CHECKPOINT_NAME

    path = Path(source)
    if path.is_dir():
        if (path / CHECKPOINT_NAME).is_file():
            return "checkpoint", path / CHECKPOINT_NAME
        raise FileNotFoundError(f"{path} is a folder without a {CHECKPOINT_NAME} (not a run folder, "
                                f"or its run has not written a checkpoint yet)")
    if path.is_file():
        return ("shipped" if path.suffix == ".safetensors" else "checkpoint"), path
    try:
        return "shipped", pretrained_path(source)
    except FileNotFoundError:
        shipped = ", ".join(sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))) or "none"
        raise FileNotFoundError(
            f"no model {str(source)!r}: expected a run folder, a checkpoint file, a .safetensors file "
            f"or a shipped model name ({shipped})") from None


def load_trained(source: str | Path, device="cpu") -> TrainedModel:
    """The model a source names, in eval mode on ``device`` (weights-only loading throughout)."""
    from .pretrained import load_pretrained
    from .train import load_model_from_checkpoint

    kind, path = resolve_model_path(source)
    if kind == "shipped":
        model, config, metadata = load_pretrained(path, device)
        results = metadata["results"]
        return TrainedModel(model.eval(), config, str(source), kind, path, _declared_step(metadata, path),
                            int(metadata["image_size"]), json.loads(metadata["config"]),
                            results.get("train_seconds"), results)
    model, config, checkpoint = load_model_from_checkpoint(path, device)
    results = _run_results(path.parent / "results.json")
    return TrainedModel(model.eval(), config, str(source), kind, path, int(checkpoint["step"]),
                        int(checkpoint["image_size"]), checkpoint["config"],
                        checkpoint.get("elapsed_seconds"), results)


def _declared_step(metadata: dict, path: Path) -> int:
    """The training step a model file's header declares; 0 when it says none (a file made by
    hand rather than by ``export``)."""
    from .checkpoint import CheckpointError

    try:
        return int(metadata.get("step", 0))
    except ValueError:
        raise CheckpointError(f"{path}: header entry 'step' is {metadata['step']!r}, expected an integer") from None


def _run_results(path: Path) -> dict:
    """A run's ``results.json``; {} when there is none or it is unreadable (with a warning:
    the weights are usable without it)."""
    if not path.is_file():
        return {}
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        warnings.warn(f"{path}: ignored, not readable as JSON ({error})", stacklevel=3)
        return {}
    return results if isinstance(results, dict) else {}


# --------------------------------------------------------------------------- fine-tuning

def config_for_fine_tuning(config: Config, source: str, overrides: list[str] | None = None) -> Config:
    """``config`` set up to fine-tune the model ``source`` names (``train CONFIG --init SOURCE``).

    The model section becomes the source's (so its weights fit), then the ``model.*``
    entries of ``overrides`` apply again; ``train.init_from`` is set to ``source``. Data
    and training settings stay ``config``'s.
    """
    from .config import _merge, config_from_dict, config_to_dict, parse_overrides

    trained = load_trained(source)
    values = config_to_dict(config)
    values["model"] = _merge(config_to_dict(trained.config)["model"],
                             parse_overrides(overrides or []).get("model", {}))
    values["train"]["init_from"] = str(source)
    return config_from_dict(values, where=f"{config.name} fine-tuned from {source}")


def initialise_from(model: torch.nn.Module, config: Config) -> TrainedModel:
    """Copy the weights of ``config.train.init_from`` into a freshly built ``model``.

    Raises ConfigError naming each model key where the two configs differ (the weights
    would not mean the same function), CheckpointError when a parameter's shape differs
    (e.g. another ``data.resolution``).
    """
    from .checkpoint import load_state_strict
    from .config import ConfigError, config_to_dict
    from .train import _config_differences

    source = config.train.init_from
    trained = load_trained(source)
    differences = _config_differences(config_to_dict(trained.config)["model"],
                                      config_to_dict(config)["model"], "model.")
    if differences:
        raise ConfigError(f"train.init_from={source!r}: that model was built with another model section "
                          f"({'; '.join(differences)}); `python -m transinr train CONFIG --init {source}` "
                          f"takes its model section for you")
    load_state_strict(model, trained.model.state_dict(), str(trained.path))
    return trained

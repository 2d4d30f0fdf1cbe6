"""Paired differences: several trained models against one reference, signal by signal.

    python -m transinr paired runs/scale_emoji32/trans_inr_16k runs/scale_emoji32/trans_inr_qkv_bias_16k …

Two models scored on the same held-out signals differ far less in their *difference*
than their standard errors suggest: most of the spread over signals (hard emoji, easy
emoji) is shared. For each model this prints the mean per-signal PSNR difference to the
reference, its standard error over signals, and the share of signals on which the model
is better. The standard error says how precisely one run pair is measured, not how much
runs vary from seed to seed: put a second seed of the reference among the models to see
that floor.

Every model must have the reference's data (same task, dataset, split, resolution); each
is scored on its own config's held-out split (``--split``), the first ``--max-items``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ConfigError


@dataclass
class PairedDifference:
    """One model against the reference: per-signal differences (model − reference), dB."""

    name: str
    differences: torch.Tensor  # (S,)

    @property
    def mean(self) -> float:
        return self.differences.mean().item()

    @property
    def standard_error(self) -> float:
        n = len(self.differences)
        return self.differences.std().item() / math.sqrt(n) if n > 1 else math.nan

    @property
    def share_better(self) -> float:
        return (self.differences > 0).float().mean().item()


def paired_differences(reference: torch.Tensor, others: dict[str, torch.Tensor]) -> list[PairedDifference]:
    """reference: (S,) per-signal PSNR; others: name → (S,) on the same signals in the same order."""
    rows = []
    for name, scores in others.items():
        if scores.shape != reference.shape:
            raise ValueError(f"{name}: {tuple(scores.shape)} scores, the reference has {tuple(reference.shape)}; "
                             "paired differences need the same signals")
        rows.append(PairedDifference(name, scores - reference))
    return rows


def data_signature(config) -> tuple:
    """What must agree for two models' scores to be paired: task and the held-out data."""
    data = config.data
    return (config.task, data.name, str(data.root), data.category, data.resolution)


def per_signal_psnr(source: str, split: str, max_items: int | None, device: str = "cpu") -> tuple[torch.Tensor, tuple]:
    """(S,) PSNR of each held-out signal for the model ``source`` names, and its data signature."""
    from .data import build_dataset, plain_images
    from .evaluate import evaluate_split
    from .tasks import build_task
    from .trained import load_trained

    trained = load_trained(source, device)
    task = build_task(trained.config)
    dataset = plain_images(build_dataset(trained.config, split))  # training images un-augmented
    scores = evaluate_split(task, trained.model, dataset, device, max_items, trained.config.train.batch_size)
    return torch.tensor(scores["per_item"]), data_signature(trained.config)


def format_rows(reference_name: str, reference: torch.Tensor, rows: list[PairedDifference]) -> str:
    lines = [f"reference {reference_name}: {reference.mean().item():.3f} dB mean over {len(reference)} signals",
             f"{'model':<48} {'Δ PSNR (dB)':>12} {'paired SE':>10} {'better on':>10}"]
    for row in rows:
        lines.append(f"{row.name:<48} {row.mean:>+12.3f} {row.standard_error:>10.3f} {row.share_better:>10.0%}")
    return "\n".join(lines)


def cli_main(argv: list[str] | None = None) -> list[PairedDifference]:
    parser = argparse.ArgumentParser(prog="transinr paired", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", help="the model the others are compared with (run folder, checkpoint, shipped name)")
    parser.add_argument("models", nargs="+", help="the models compared with it")
    parser.add_argument("--split", default="test", help="held-out split scored (default test)")
    parser.add_argument("--max-items", type=int, default=None, help="only the first N signals")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.max_items is not None and args.max_items < 1:
        raise ConfigError(f"--max-items must be ≥ 1, got {args.max_items}")
    reference, signature = per_signal_psnr(args.reference, args.split, args.max_items, args.device)
    others = {}
    for source in args.models:
        scores, other_signature = per_signal_psnr(source, args.split, args.max_items, args.device)
        if other_signature != signature:
            raise ConfigError(f"{source} is scored on other data than {args.reference} "
                              f"({other_signature} against {signature}); paired differences need the same signals")
        others[Path(source).name if Path(source).exists() else source] = scores
    rows = paired_differences(reference, others)
    print(format_rows(args.reference, reference, rows))
    return rows


if __name__ == "__main__":
    cli_main()

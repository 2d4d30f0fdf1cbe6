"""Weight-group ablation: the same config trained with G ∈ {1, 4, 16, 64} at equal budget.

    python -m transinr ablate-groups emoji32_demo --groups 1 4 16 64 --out figures

Fewer groups share one modulation vector among more columns: fewer generated
parameters, less precision (paper, CelebA: 25.6 / 27.9 / 29.9 / 32.0 dB for 1 / 4 / 16 / 64).
G is capped by the hyponet width (a layer cannot have more groups than columns).
Each run lives in its own folder, so an interrupted ablation resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib.pyplot as plt

from .config import load_config
from .train import train
from .viz import save_figure


def ablate_groups(config_name: str, groups: list[int], out_dir: str | Path = "figures",
                  runs_dir: str | Path = "runs/ablate_groups", overrides: list[str] | None = None,
                  device: str | None = None, progress: bool = True) -> list[dict]:
    """Train one run per G and write ``weight_groups.{png,pdf,csv,md}`` into ``out_dir``."""
    base = load_config(config_name, overrides)
    width = base.model.hyponet.width
    capped = sorted({min(g, width) for g in groups})
    if capped != sorted(set(groups)):
        print(f"groups capped at the hyponet width {width}: {capped}")
    rows = []
    for g in capped:
        config = load_config(config_name, list(overrides or []) + [f"model.n_groups={g}",
                                                                    f"name={base.name}_G{g}"])
        results = train(config, Path(runs_dir) / f"G{g}", device=device, progress=progress)
        rows.append({"groups": g, "psnr_mean": results["test_psnr_mean"], "psnr_std": results["test_psnr_std"],
                     "images_seen": results["images_seen"], "train_seconds": results["train_seconds"]})
    write_ablation(rows, base.name, Path(out_dir))
    return rows


def write_ablation(rows: list[dict], name: str, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "weight_groups.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Weight-group ablation, {name} ({rows[0]['images_seen']} training images per run)", "",
             "| G | held-out PSNR (dB) | train time (s) |", "|---|---|---|"]
    lines += [f"| {r['groups']} | {r['psnr_mean']:.2f} ± {r['psnr_std']:.2f} | {r['train_seconds']:.0f} |"
              for r in rows]
    (out_dir / "weight_groups.md").write_text("\n".join(lines) + "\n")
    (out_dir / "weight_groups.json").write_text(json.dumps(rows, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(4.0, 3.0))
    ax.errorbar([r["groups"] for r in rows], [r["psnr_mean"] for r in rows],
                yerr=[r["psnr_std"] for r in rows], marker="o", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("weight groups G per layer")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.set_title(name, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out_dir / "weight_groups.png", pdf=True)


def cli_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="transinr ablate-groups", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="emoji32_demo")
    parser.add_argument("overrides", nargs="*", help="key=value applied to every run (e.g. train.max_images=32000)")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--out", default="figures")
    parser.add_argument("--runs-dir", default="runs/ablate_groups")
    parser.add_argument("--device", default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    rows = ablate_groups(args.config, args.groups, args.out, args.runs_dir, args.overrides, args.device,
                         progress=not args.quiet)
    print((Path(args.out) / "weight_groups.md").read_text())

"""Paper-style figures from a trained model: ``python -m transinr figures CHECKPOINT``.

Each figure is written as PNG and PDF into ``figures/`` (or ``--out``) together with
the numbers it shows (``*.json``), so a figure in the README always comes with the
measurement behind it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import analysis
from .viz import save_figure, to_numpy_image


def attention_figure(model, images: torch.Tensor, transformer_layer: int = -1):
    """Rows: images; columns: the image, then the mean attention of each INR layer's weight
    tokens (last Transformer layer by default) overlaid on it."""
    result = analysis.weight_token_attention(model, images)
    layers = sorted(model.weight_tokens.groups)
    fig, axes = plt.subplots(len(images), len(layers) + 1, figsize=(1.6 * (len(layers) + 1), 1.6 * len(images)),
                             squeeze=False)
    for row, image in enumerate(images):
        axes[row, 0].imshow(to_numpy_image(image))
        for col, layer in enumerate(layers, start=1):
            heat = analysis.attention_on_pixels(model.tokenizer,
                                                result.mean_map(layer, transformer_layer)[row:row + 1])[0]
            axes[row, col].imshow(to_numpy_image(image))
            axes[row, col].imshow(heat.cpu().numpy(), cmap="inferno", alpha=0.65)
            if row == 0:
                axes[row, col].set_title(f"INR layer {layer}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=8)
    fig.tight_layout()
    return fig


def layerwise_figure(scores: dict[str, np.ndarray]):
    """PSNR against update steps: Transformer layers (Trans-INR) and, when given, inner
    gradient steps (Learned Init). scores: label → (steps + 1, B)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for label, values in scores.items():
        mean = values.mean(axis=1)
        ax.plot(range(len(mean)), mean, marker="o", label=label)
    ax.set_xlabel("update step (Transformer layer / gradient step)")
    ax.set_ylabel("PSNR on the input (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def weight_statistics_figure(stats: list[dict]):
    layers = [s["layer"] for s in stats]
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    width = 0.38
    ax.bar(np.array(layers) - width / 2, [s["cosine_to_base"] for s in stats], width, label="cos(generated, base)")
    ax.bar(np.array(layers) + width / 2, [s["cosine_across_inputs"] for s in stats], width,
           label="cos across inputs")
    ax.set_xlabel("INR layer")
    ax.set_ylabel("mean cosine similarity of columns")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_analysis_figures(checkpoint: str | Path, out_dir: str | Path = "figures", n_images: int = 6,
                           n_stat_images: int = 64, device: str = "cpu") -> dict:
    """Attention, layer-wise decoding and weight-statistics figures for an image checkpoint."""
    from .data import build_dataset
    from .train import load_model_from_checkpoint

    model, config, _ = load_model_from_checkpoint(checkpoint, device)
    model.eval()
    test_set = build_dataset(config, "test")
    out_dir = Path(out_dir)
    images = torch.stack([test_set[i] for i in range(min(n_images, len(test_set)))]).to(device)
    stat_images = torch.stack([test_set[i] for i in range(min(n_stat_images, len(test_set)))]).to(device)
    written = {}
    written["attention"] = save_figure(attention_figure(model, images), out_dir / "weight_token_attention.png", pdf=True)
    layerwise = analysis.layerwise_psnr(model, stat_images).cpu().numpy()
    written["layerwise"] = save_figure(layerwise_figure({"Trans-INR (Transformer layers)": layerwise}),
                                       out_dir / "layerwise_decoding.png", pdf=True)
    stats = analysis.generated_weight_statistics(model, stat_images)
    written["weight_statistics"] = save_figure(weight_statistics_figure(stats), out_dir / "weight_statistics.png",
                                               pdf=True)
    numbers = {"checkpoint": str(checkpoint), "layerwise_psnr_mean": layerwise.mean(axis=1).tolist(),
               "weight_statistics": stats}
    (out_dir / "analysis_numbers.json").write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    return {k: str(v) for k, v in written.items()}


def cli_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="transinr figures", description=__doc__)
    parser.add_argument("checkpoint", help="an image-regression checkpoint")
    parser.add_argument("--out", default="figures")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    for name, path in write_analysis_figures(args.checkpoint, args.out, device=args.device).items():
        print(f"{name}: {path}")

"""Figures: plain matplotlib, saved as PNG (and PDF where asked)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] → (H, W, 3) float array, clipped."""
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def image_rows_figure(rows: dict[str, torch.Tensor], titles: list[str] | None = None, scale: float = 1.4):
    """A grid with one row per entry of ``rows`` (label → (N, 3, H, W)) and N columns."""
    labels = list(rows)
    n_cols = rows[labels[0]].shape[0]
    fig, axes = plt.subplots(len(labels), n_cols, figsize=(scale * n_cols, scale * len(labels)),
                             squeeze=False)
    for r, label in enumerate(labels):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(to_numpy_image(rows[label][c]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, pdf: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    if pdf:
        fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return path

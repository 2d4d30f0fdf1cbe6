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


def psnr_vs_time_figure(trajectories: dict[str, dict], reference_psnr: float | None = None):
    """PSNR against test-time wall time, one line per method (a dot for a one-shot method).

    trajectories: label → {``seconds`` (R,) wall time of the whole batch, ``psnr`` (R, B)};
    time is divided by B (time per signal) and PSNR averaged over the batch. Points at
    0 s (an untimed start such as θ_0) cannot sit on the log axis and are left out.
    reference_psnr: a dotted horizontal line, e.g. the PSNR the others race to.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, trajectory in trajectories.items():
        psnr = torch.tensor(trajectory["psnr"])
        seconds = torch.tensor(trajectory["seconds"]) / psnr.shape[1]
        mean = psnr.mean(dim=1)
        keep = seconds > 0
        style = "o" if len(seconds) == 1 else ".-"
        ax.plot(seconds[keep].numpy(), mean[keep].numpy(), style, label=label)
    if reference_psnr is not None:
        ax.axhline(reference_psnr, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("test-time wall time per signal (s)")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def weight_token_trace_figure(trace: dict, item: int = 0):
    """One weight token becoming its columns of W_l, one panel per step, over the input
    dimension d: u, the group's base columns W̄, W̄ ⊙ u, and the normalised columns (the
    generated weight's own columns drawn on top as crosses when ``generated`` is given).
    trace: :func:`transinr.analysis.trace_weight_token`'s dict; ``item`` picks the batch entry."""
    u = trace["u"][item].cpu()
    indices = trace["column_indices"].tolist()
    d = u.shape[0]
    c = len(indices)
    panels = [(f"u = Linear(LayerNorm(token)): ({d},)", u.unsqueeze(1), ["u"]),
              (f"W̄: the group's base columns: ({d}, {c})", trace["base"].cpu(), [f"W̄[:, {j}]" for j in indices]),
              (f"W̄ ⊙ u: ({d}, {c})", trace["modulated"][item].cpu(), [f"column {j}" for j in indices]),
              (f"normalised, ‖column‖₂ = 1: ({d}, {c})", trace["columns"][item].cpu(),
               [f"column {j}" for j in indices])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.5, 1.5 * len(panels) + 0.4), sharex=True)
    for ax, (title, values, labels) in zip(axes, panels):
        for column, label in zip(values.detach().T, labels):
            ax.plot(np.arange(d), column.numpy(), linewidth=1, label=label)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_title(title, fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right", ncol=len(labels))
    if "generated" in trace:  # the model's own weight, to show the last panel is what it wrote
        generated = trace["generated"][item, :d, indices].detach().cpu()
        for column in generated.T:
            axes[-1].plot(np.arange(d), column.numpy(), "x", markersize=3, color="black")
    axes[-1].set_xlabel("input dimension of the INR layer", fontsize=8)
    fig.tight_layout()
    return fig


def view_attention_figure(views: torch.Tensor, patch_maps: torch.Tensor, padding: int = 0,
                          column_labels: list[str] | None = None):
    """Attention on the patches of each support view, laid over the view: one row per view,
    one column per map (e.g. per Transformer layer), on one colour scale with its colour
    bar (in % of an attention row).

    views: (V, 3, H, W) in [0, 1]; patch_maps: (V, gh, gw) or (R, V, gh, gw), e.g.
    :func:`transinr.analysis.support_view_attention`; padding: the tokenizer's zero border,
    so the patch grid covers (H + 2·padding) pixels and is cropped to the view. Each
    panel's title gives the view's share of the rows."""
    maps = 100.0 * patch_maps.detach().float().cpu().numpy()
    maps = maps[None] if maps.ndim == 3 else maps
    columns, count = maps.shape[:2]
    height, width = views.shape[-2], views.shape[-1]
    fig, axes = plt.subplots(count, columns, figsize=(2.1 * columns + 1.0, 2.2 * count), squeeze=False)
    top = float(maps.max())  # one scale for every panel: equal brightness, equal attention
    # The patch grid over the padded image, in pixel coordinates (left, right, bottom, top).
    extent = (-padding - 0.5, width + padding - 0.5, height + padding - 0.5, -padding - 0.5)
    for v in range(count):
        for c in range(columns):
            ax = axes[v, c]
            ax.imshow(to_numpy_image(views[v]))
            shown = ax.imshow(maps[c, v], cmap="inferno", alpha=0.6, vmin=0.0, vmax=top, extent=extent,
                              interpolation="nearest")
            ax.set_xlim(-0.5, width - 0.5)
            ax.set_ylim(height - 0.5, -0.5)
            label = f"{column_labels[c]}: " if column_labels else ""
            ax.set_title(f"{label}{maps[c, v].sum():.1f}% of the rows", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[v, 0].set_ylabel(f"support view {v + 1}", fontsize=8)
    fig.tight_layout()
    bar = fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    bar.set_label("attention per patch (% of a row)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return fig


def save_figure(fig, path: str | Path, pdf: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    if pdf:
        fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return path

"""Paper-style figures from a trained model: ``python -m transinr figures MODEL``,
or every figure of the notebooks from the shipped models: ``python -m transinr figures --all``.

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
from matplotlib.ticker import MaxNLocator

from . import analysis
from .viz import image_rows_figure, save_figure, to_numpy_image


def attention_figure(model, images: torch.Tensor, transformer_layer: int = -1):
    """Rows: images; columns: the image, then the mean attention of each INR layer's weight
    tokens (last Transformer layer by default) overlaid on it."""
    result = analysis.weight_token_attention(model, images)
    layers = sorted(model.weight_tokens.groups)
    heats = {(row, layer): analysis.attention_on_pixels(
                 model.tokenizer, result.mean_map(layer, transformer_layer)[row:row + 1])[0].cpu().numpy()
             for row in range(len(images)) for layer in layers}
    # One colour scale for every panel (with its colour bar), so equal brightness is equal attention.
    top = max(float(heat.max()) for heat in heats.values())
    fig, axes = plt.subplots(len(images), len(layers) + 1, figsize=(1.6 * (len(layers) + 1) + 0.8, 1.6 * len(images)),
                             squeeze=False)
    for row, image in enumerate(images):
        axes[row, 0].imshow(to_numpy_image(image))
        for col, layer in enumerate(layers, start=1):
            axes[row, col].imshow(to_numpy_image(image))
            shown = axes[row, col].imshow(heats[row, layer], cmap="inferno", alpha=0.65, vmin=0.0, vmax=top)
            if row == 0:
                axes[row, col].set_title(f"INR layer {layer}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("input", fontsize=8)
    fig.tight_layout()
    bar = fig.colorbar(shown, ax=axes[:, 1:].ravel().tolist(), fraction=0.03, pad=0.02)
    bar.set_label("attention per patch (mean over tokens and heads)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return fig


def layerwise_figure(scores: dict[str, np.ndarray]):
    """PSNR against update steps: Transformer layers (Trans-INR) and, when given, inner
    gradient steps (Learned Init). scores: label → (steps + 1, B)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for label, values in scores.items():
        mean = values.mean(axis=1)
        ax.plot(range(len(mean)), mean, marker="o", label=label)
    ax.set_xlabel("update step (Transformer layer / gradient step)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("PSNR on the input (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def weight_statistics_figure(stats: list[dict]):
    """Per INR layer: how close generated columns are to the base matrix and to each other."""
    layers = [s["layer"] for s in stats]
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    width = 0.38
    ax.bar(np.array(layers) - width / 2, [s["cosine_to_base"] for s in stats], width, label="cos(generated, base)")
    ax.bar(np.array(layers) + width / 2, [s["cosine_across_inputs"] for s in stats], width,
           label="cos across inputs")
    ax.set_xlabel("INR layer")
    ax.set_ylabel("mean cosine similarity of columns")
    # Cosines can be negative: the axis covers them, with a line at zero.
    lowest = min([0.0] + [s[key] for s in stats for key in ("cosine_to_base", "cosine_across_inputs")])
    ax.set_ylim(min(-0.05, 1.1 * lowest), 1.05)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------
# Figures of the notebooks, and one command that regenerates all of them:
#   python -m transinr figures --all [--out figures] [--smoke]
# --------------------------------------------------------------------------------------

def spread_indices(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)``: a varied sample of a split
    (neighbouring emoji are often variants of one another)."""
    count = min(count, total)
    return np.linspace(0, total - 1, count).round().astype(int).tolist()


@torch.no_grad()
def samples_figure(model, images: torch.Tensor, scale: int = 4, smooth: bool = False):
    """Rows: ground truth, the generated INR at the input's size, and the same INR queried
    on a ``scale``× finer grid. images: (B, 3, H, W); column titles give each PSNR.

    Training only ever pins the INR down at the input's pixel centres; its Fourier
    features reach frequencies above that grid's Nyquist limit, and between the centres
    they add up to a regular dot pattern on the finer grid. ``smooth`` adds a row with
    the fine render averaged over one input pixel around each point (a box low-pass at
    the input's resolution): the band the training data constrains."""
    from .metrics import psnr_per_item
    from .tasks.image import render_image

    model.eval()
    weights = model(images)
    size = images.shape[-1]
    native = render_image(model.hyponet, weights, size, size).clamp(0, 1)
    finer = render_image(model.hyponet, weights, size * scale, size * scale).clamp(0, 1)
    titles = [f"{value:.1f} dB" for value in psnr_per_item(native, images).tolist()]
    rows = {"ground truth": images.cpu(), "INR": native.cpu(), f"INR at {scale}×": finer.cpu()}
    if smooth:
        padded = torch.nn.functional.pad(finer, (scale // 2, (scale - 1) // 2) * 2, mode="replicate")
        rows[f"{scale}×, pixel-averaged"] = torch.nn.functional.avg_pool2d(padded, scale, stride=1).cpu()
    return image_rows_figure(rows, titles=titles)


def psnr_histogram_figure(per_item: list[float] | np.ndarray, label: str = "Trans-INR"):
    """Distribution of per-image PSNR over a held-out split, mean marked."""
    values = np.asarray(per_item, dtype=float)
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    ax.hist(values, bins=min(30, max(5, len(values) // 4)), color="tab:blue", alpha=0.8)
    ax.axvline(values.mean(), color="black", linestyle="--", label=f"mean {values.mean():.2f} dB")
    ax.set_xlabel("PSNR of the generated INR (dB)")
    ax.set_ylabel("test images")
    ax.set_title(f"{label}, {len(values)} held-out images", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def group_attention_figure(model, image: torch.Tensor, inr_layer: int, transformer_layer: int = -1,
                           max_groups: int = 16):
    """Where each weight-token group of one INR layer looks (heads averaged): one panel
    per group, the image underneath. image: (3, H, W)."""
    result = analysis.weight_token_attention(model, image.unsqueeze(0))
    maps = result.for_layer(inr_layer)[0, transformer_layer].mean(0)  # (g, gh, gw)
    groups = min(len(maps), max_groups)
    heat = analysis.attention_on_pixels(model.tokenizer, maps[:groups]).cpu().numpy()
    columns = min(groups, 8)
    rows = -(-groups // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.4 * rows), squeeze=False)
    picture = to_numpy_image(image)
    for group, ax in enumerate(axes.flat):
        ax.axis("off")
        if group < groups:
            ax.imshow(picture)
            # One colour scale for all groups, so brighter means more attention.
            shown = ax.imshow(heat[group], cmap="inferno", alpha=0.65, vmin=0, vmax=heat.max())
            ax.set_title(f"group {group}", fontsize=7)
    fig.suptitle(f"INR layer {inr_layer}: attention of each weight group", fontsize=9)
    fig.tight_layout()
    bar = fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    bar.ax.tick_params(labelsize=6)
    return fig


def gradient_step_figure(trajectory: dict):
    """Left: PSNR of the last layer after each gradient step, by autograd (line) and by
    stacked attention layers (markers). Right: their largest weight difference per step.
    trajectory: :func:`transinr.analysis.gradient_descent_trajectories`'s dict."""
    steps = np.arange(trajectory["steps"] + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.6, 3.0))
    left.plot(steps, trajectory["psnr_autograd"].mean(1), "-", color="tab:blue", label="gradient descent (autograd)")
    left.plot(steps, trajectory["psnr_attention"].mean(1), "o", color="tab:orange", fillstyle="none",
              label="stacked attention layers")
    left.axhline(trajectory["psnr_generated"].mean(), color="gray", linestyle="--",
                 label="last layer from Trans-INR")
    left.set_xlabel("step K")
    left.set_ylabel("PSNR on the image (dB)")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    # A difference of exactly 0 has no place on a log axis; show it at the floor.
    difference = np.maximum(trajectory["max_abs_difference"], 1e-18)
    right.semilogy(steps, difference, "o-", color="tab:red")
    right.set_xlabel("step K")
    right.set_ylabel("max |W_attention − W_autograd|")
    right.set_ylim(1e-18, 1.0)
    right.grid(alpha=0.3)
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(steps) == 1:  # K = 0: one tick at 0, not a fractional axis around it
            ax.set_xticks([0])
            ax.set_xlim(-0.5, 0.5)
    fig.tight_layout()
    return fig


def _load_model(name: str, smoke: bool, device: str, train_live: bool):
    """(model in eval mode, config, {"step", "results"}) for any model source that
    :func:`transinr.trained.load_trained` resolves: a run folder, a training checkpoint, a
    shipped name or a .safetensors file. When there is no such model: a small one trained
    live from the shipped config of that name (``train_live``, as the notebooks do), else
    None (with a message)."""
    from .config import ConfigError, resolve_config_path
    from .trained import load_trained

    try:
        trained = load_trained(name, device)
    except FileNotFoundError as missing:
        if not train_live:
            print(f"skipped: {missing}")
            return None
        try:
            resolve_config_path(name)  # only a shipped config's name can be trained live
        except ConfigError:
            raise missing from None
        import tempfile

        from .pretrained import load_or_train

        # A live-trained model is held in memory; its run folder is not worth keeping.
        with tempfile.TemporaryDirectory(prefix="transinr-live-") as run_dir:
            return load_or_train(name, max_images=256 if smoke else 20000, run_dir=run_dir, device=device)
    return trained.model, trained.config, {"step": str(trained.step), "results": trained.results}


def _view_synthesis_figures(save, out_dir: Path, device: str, index: int = 0) -> dict:
    """Notebook 02's figures from the shipped 1- and 2-view NeRF models (skipped, with a
    message, when they are not shipped): 1 vs 2 input views, before and after test-time
    optimisation, and a turntable GIF."""
    from . import nvs_widgets
    from .data import build_dataset

    loaded = {label: _load_model(name, False, device, train_live=False)
              for label, name in (("1 view", "shapes3d_chairs_1view"), ("2 views", "shapes3d_chairs_2view"))}
    if any(value is None for value in loaded.values()):
        return {}
    objects = {}
    for label, (model, config, _) in loaded.items():
        dataset = build_dataset(config, "test")
        objects[label] = nvs_widgets.ViewedObject.from_dataset(model, config, dataset, index, device, label)
    views = nvs_widgets.compare_heldout(objects)
    save("view_synthesis_1_vs_2_views", views["figure"])
    optimised = {label: objects[label].optimised(label=f"{label} + TTO") for label in objects}
    tto = nvs_widgets.compare_heldout({**objects, **{o.label: o for o in optimised.values()}})
    save("view_synthesis_tto", tto["figure"])
    gif = out_dir / "view_synthesis_turntable.gif"
    gif.parent.mkdir(parents=True, exist_ok=True)
    gif.write_bytes(nvs_widgets.gif_bytes(nvs_widgets.turntable_frames(optimised["2 views"])))
    return {"view_synthesis_object": index, "view_synthesis_psnr": tto["psnr"]}


FIGURE_DEPENDENCIES = {"trimesh": "drawing the view-synthesis figures (it renders the embedded 3D set)"}
INSTALL_3D = "pip install trimesh scipy"
WEIGHT_GROUP_MODELS = ("emoji32_demo_G1", "emoji32_demo_G4", "emoji32_demo_G16", "emoji32_demo_G64")


def write_all_figures(out_dir: str | Path = "figures", trans_inr: str = "emoji32",
                      learned_init: str = "emoji32_learned_init", smoke: bool = False,
                      device: str = "cpu", view_synthesis: bool = True,
                      weight_groups: tuple[str, ...] = WEIGHT_GROUP_MODELS) -> dict:
    """Every figure the notebooks draw, as PNG + PDF in ``out_dir``, with their numbers
    in ``figures_numbers.json``; returns figure name → path.

    The figures are drawn into a temporary folder beside ``out_dir`` and moved into
    ``out_dir`` only once every one of them succeeded, so a failure (a missing package,
    an interrupted run) leaves ``out_dir`` exactly as it was.

    trans_inr: a run folder, a training checkpoint, a shipped name or a .safetensors path
      (see :mod:`transinr.trained`); when it names a shipped config whose model file is
      missing, a small one is trained live (as the notebooks do).
    view_synthesis: also draw notebook 02's figures from the shipped NeRF models.
    learned_init: adds Learned Init's inner steps to the layer-wise figure when that
      model exists (it is not trained live here).
    weight_groups: shipped models of the weight-group ablation, re-scored for
      ``weight_groups.{png,pdf,md,csv,json}`` (empty: leave the ablation out).
    smoke: tiny sizes throughout (CI), e.g. for checking that the command runs.
    """
    import os
    import shutil
    import tempfile

    from .errors import require

    if view_synthesis and not smoke:  # fail before minutes of work, not after
        for module, purpose in FIGURE_DEPENDENCIES.items():
            require(module, purpose, INSTALL_3D)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-partial-", dir=out_dir.parent))
    try:
        written = _draw_all_figures(staging, trans_inr, learned_init, smoke, device, view_synthesis,
                                    weight_groups)
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(staging.iterdir()):
            os.replace(path, out_dir / path.name)  # same file system: each move is atomic
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: str(out_dir / Path(path).name) for name, path in written.items()}


def weight_group_rows(names: tuple[str, ...], device: str, max_items: int | None = None) -> list[dict]:
    """Rows of the weight-group ablation table from its shipped models, re-scored on the
    test split (training budget and time from each model's stored results)."""
    from .data import build_dataset
    from .evaluate import evaluate_split
    from .tasks import build_task

    rows = []
    for name in names:
        loaded = _load_model(name, False, device, train_live=False)
        if loaded is None:
            return []
        model, config, meta = loaded
        scores = evaluate_split(build_task(config), model, build_dataset(config, "test"), device,
                                max_items=max_items)
        results = meta.get("results", {})
        rows.append({"groups": config.model.n_groups, "psnr_mean": scores["psnr_mean"],
                     "psnr_std": scores["psnr_std"], "images_seen": results.get("images_seen"),
                     "train_seconds": results.get("train_seconds")})
    return rows


def _draw_all_figures(out_dir: Path, trans_inr, learned_init, smoke, device, view_synthesis,
                      weight_groups) -> dict:
    """:func:`write_all_figures`'s work, straight into ``out_dir`` (its staging folder)."""
    import os

    from .data import build_dataset
    from .evaluate import evaluate_split
    from .tasks import build_task

    model, config, _ = _load_model(trans_inr, smoke, device, train_live=True)
    if config.task != "image":
        from .config import ConfigError

        raise ConfigError(f"{trans_inr} is a model of task {config.task!r}; these figures need one of task "
                          f"'image' (figures --all draws the view-synthesis figures from the shipped models)")
    test_set = build_dataset(config, "test")
    sample_count, stat_count = (4, 8) if smoke else (8, 64)

    def images_at(indices):
        return torch.stack([test_set[i] for i in indices]).to(device)

    samples = images_at(spread_indices(len(test_set), sample_count))
    stat_images = images_at(range(min(stat_count, len(test_set))))
    written, numbers = {}, {"trans_inr": str(trans_inr), "smoke": smoke}

    def save(name: str, fig) -> None:
        written[name] = str(save_figure(fig, out_dir / f"{name}.png", pdf=True))

    save("samples", samples_figure(model, samples))
    scores = evaluate_split(build_task(config), model, test_set, device, max_items=32 if smoke else None)
    numbers["test_psnr"] = {key: scores[key] for key in ("psnr_mean", "psnr_std", "n")}
    save("test_psnr_histogram", psnr_histogram_figure(scores["per_item"]))
    save("weight_token_attention", attention_figure(model, samples[: min(4, len(samples))]))
    save("weight_group_attention", group_attention_figure(model, samples[0], inr_layer=0))

    curves = {"Trans-INR (Transformer layers)": analysis.layerwise_psnr(model, stat_images).cpu().numpy()}
    loaded = _load_model(learned_init, smoke, device, train_live=False) if learned_init else None
    if loaded is not None:
        steps = len(curves["Trans-INR (Transformer layers)"]) - 1
        curves["Learned Init (gradient steps)"] = analysis.learned_init_step_psnr(
            loaded[0], stat_images, steps=max(steps, loaded[0].test_inner_steps)).cpu().numpy()
    save("layerwise_decoding", layerwise_figure(curves))
    numbers["layerwise_psnr_mean"] = {label: values.mean(axis=1).tolist() for label, values in curves.items()}

    problem = analysis.last_layer_problem(model, samples[:1])
    trajectory = analysis.gradient_descent_trajectories(problem, steps=3 if smoke else 20)
    save("gradient_step_attention", gradient_step_figure(trajectory))
    numbers["gradient_step"] = {"steps": trajectory["steps"], "step_size": trajectory["step_size"],
                                "max_abs_difference": float(trajectory["max_abs_difference"].max()),
                                "psnr_final": float(trajectory["psnr_autograd"][-1].mean()),
                                "psnr_generated": float(trajectory["psnr_generated"].mean())}

    stats = analysis.generated_weight_statistics(model, stat_images)
    save("weight_statistics", weight_statistics_figure(stats))
    numbers["weight_statistics"] = stats
    if weight_groups:
        from .ablation import write_ablation

        rows = weight_group_rows(tuple(weight_groups), device, max_items=32 if smoke else None)
        if rows:
            write_ablation(rows, f"{os.path.commonprefix(list(weight_groups)).rstrip('_G')} "
                                 "(shipped models, re-scored)", out_dir)
            written["weight_groups"] = str(out_dir / "weight_groups.png")
            numbers["weight_groups"] = rows
    if view_synthesis and not smoke:
        numbers.update(_view_synthesis_figures(save, out_dir, device))
    (out_dir / "figures_numbers.json").write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    return written


def cli_main(argv: list[str] | None = None) -> None:
    from .runtime import resolve_device

    parser = argparse.ArgumentParser(prog="transinr figures", description=__doc__)
    parser.add_argument("model", nargs="?", metavar="MODEL",
                        help="an image-regression model: a run folder, a checkpoint, a shipped name (e.g. "
                             "emoji32) or a .safetensors file")
    parser.add_argument("--model", "--trans-inr", dest="model_option", metavar="MODEL", default=None,
                        help="the same as MODEL; with --all, the Trans-INR model of the figures (default emoji32)")
    parser.add_argument("--all", action="store_true",
                        help="every figure of the notebooks, from the shipped models (see write_all_figures)")
    parser.add_argument("--learned-init", default="emoji32_learned_init",
                        help="with --all: shipped name or .safetensors path ('' to leave it out)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for a quick check")
    parser.add_argument("--out", default="figures")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.model and (args.all or args.model_option):
        parser.error("give either MODEL, or --all (its Trans-INR model with --model)")
    model = args.model or args.model_option
    if model is None and not args.all:
        parser.error("give a model (MODEL or --model) or --all")
    device = str(resolve_device(args.device))  # an unavailable device is one clear error, up front
    # A model alone gets the same 2D figures as the shipped model does under --all.
    written = write_all_figures(args.out, model or "emoji32", args.learned_init, args.smoke, device,
                                view_synthesis=args.all, weight_groups=WEIGHT_GROUP_MODELS if args.all else ())
    for name, path in written.items():
        print(f"{name}: {path}")

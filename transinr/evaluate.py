"""Held-out evaluation: PSNR of generated INRs, a reference baseline and a figure."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from .metrics import mse_to_psnr
from .runtime import resolve_device, write_json
from .viz import image_rows_figure, save_figure


def _subset(dataset, max_items: int | None):
    if max_items is None or max_items >= len(dataset):
        return dataset
    return Subset(dataset, range(max_items))


def spread_subset(dataset, count: int):
    """``count`` items evenly spaced over the whole of ``dataset`` (all of it if it is smaller).

    The emoji training split is ordered by category (faces first), so its first items are
    not a fair sample of it: on the shipped models the first 351 training images score
    0.6 dB (Trans-INR) and 1.2 dB (Learned Init) above the whole split.
    """
    if count >= len(dataset):
        return dataset
    return Subset(dataset, torch.linspace(0, len(dataset) - 1, count).round().long().tolist())


@torch.no_grad()
def evaluate_split(task, model, dataset, device, max_items: int | None = None, batch_size: int = 16,
                   progress: bool = False) -> dict:
    """Mean, std and standard error of per-signal PSNR over (the first ``max_items`` of)
    ``dataset``. A signal is what ``task.psnr`` scores one of: an image, or for view
    synthesis an object (its PSNR the mean over its held-out views), so ``n`` and the
    standard error count objects there."""
    model.eval()
    loader = DataLoader(_subset(dataset, max_items), batch_size=batch_size, shuffle=False)
    scores = []
    for batch in tqdm(loader, disable=not progress, desc="evaluate", leave=False):
        scores.append(task.psnr(model, task.to_device(batch, device)).cpu())
    scores = torch.cat(scores)
    std = scores.std().item() if len(scores) > 1 else 0.0
    # The standard error of the mean is what tells two methods' means apart.
    return {"psnr_mean": scores.mean().item(), "psnr_std": std, "psnr_se": std / math.sqrt(len(scores)),
            "n": len(scores), "per_item": scores.tolist()}


@torch.no_grad()
def mean_image_psnr(train_set, test_set, max_train: int = 5000) -> float:
    """PSNR of predicting the mean training image for every held-out image.

    The floor any meta-learner must beat: it knows the data's average, nothing of
    the instance.
    """
    train_subset = _subset(train_set, max_train)
    mean = torch.stack([train_subset[i] for i in range(len(train_subset))]).mean(0)
    scores = [mse_to_psnr(((mean - test_set[i]) ** 2).mean()) for i in range(len(test_set))]
    return torch.stack(scores).mean().item()


@torch.no_grad()
def write_image_samples(task, model, test_set, device, path: Path, n: int = 8) -> Path:
    """Ground truth above generated INRs (and above those at 4× resolution) for held-out images."""
    model.eval()
    images = torch.stack([test_set[i] for i in range(min(n, len(test_set)))]).to(device)
    generated = task.predict(model, images).clamp(0, 1)
    scores = task.psnr(model, images)
    rows = {"ground truth": images.cpu(), "Trans-INR": generated.cpu()}
    fig = image_rows_figure(rows, titles=[f"{s:.1f} dB" for s in scores.tolist()])
    return save_figure(fig, path)


def ood_scores(task, model, ood_set, device, batch_size: int) -> dict:
    """``ood_psnr_mean``, ``_std``, ``_se`` and ``ood_items`` on the out-of-distribution set
    ({} if none); for view synthesis also ``ood_blank_white_psnr``, the floor on that set,
    and ``ood_root``, where its objects came from."""
    if ood_set is None:
        return {}
    scores = evaluate_split(task, model, ood_set, device, None, batch_size)
    results = {"ood_psnr_mean": scores["psnr_mean"], "ood_psnr_std": scores["psnr_std"],
               "ood_psnr_se": scores["psnr_se"], "ood_items": scores["n"]}
    if task.kind == "nvs":
        results["ood_blank_white_psnr"] = task.blank_white_psnr(ood_set)
        results["ood_root"] = str(ood_set.root)
        results["ood_split"] = ood_set.split
    return results


def evaluate_run_end(task, model, train_set, test_set, device, config, run_dir: Path,
                     train_seconds: float, steps: int, progress: bool = True) -> dict:
    """Score the finished model on the whole held-out split and write results + figure."""
    scores = evaluate_split(task, model, test_set, device, None, config.train.batch_size, progress=progress)
    results = {
        "config": config.name,
        "steps": steps,
        "images_seen": steps * config.train.batch_size,
        "train_seconds": round(train_seconds, 1),
        "test_psnr_mean": scores["psnr_mean"],
        "test_psnr_std": scores["psnr_std"],
        "test_psnr_se": scores["psnr_se"],
        "test_items": scores["n"],
    }
    if task.kind == "image":
        from .data import build_ood_dataset, plain_images

        train_images = plain_images(train_set)
        results["mean_image_psnr"] = mean_image_psnr(train_images, test_set)
        # The train–test gap: the same scoring on (un-augmented) training images, as many
        # as the test split has, spread over the whole training split.
        train_scores = evaluate_split(task, model, spread_subset(train_images, len(test_set)), device, None,
                                      config.train.batch_size)
        results["train_psnr_mean"], results["train_items"] = train_scores["psnr_mean"], train_scores["n"]
        results.update(ood_scores(task, model, build_ood_dataset(config, test_set[0].shape[-1]), device,
                                  config.train.batch_size))
        figure = write_image_samples(task, model, test_set, device, run_dir / "samples.png",
                                     config.train.figure_images)
    else:
        from .data import build_ood_dataset

        results["blank_white_psnr"] = task.blank_white_psnr(test_set)
        results["test_psnr_per_object"] = scores["per_item"]  # each the mean over its held-out views
        results.update(ood_scores(task, model, build_ood_dataset(config), device, config.train.batch_size))
        figure = task.write_samples(model, test_set, device, run_dir)
    results["figure"] = str(figure)
    write_json(run_dir / "results.json", results)
    return results


def evaluate_checkpoint(checkpoint_path: str | Path, split: str = "test", device: str = "auto",
                        max_items: int | None = None, out_dir: str | Path | None = None,
                        overrides: list[str] | None = None) -> dict:
    """Load a trained model (a run folder, a checkpoint, a shipped name or a .safetensors
    file; see :mod:`transinr.trained`) and score it on ``split`` of its own dataset.

    ``out_dir`` defaults to the checkpoint's folder, or ``runs/pretrained/<name>`` for a
    shipped model.
    """
    from .config import ConfigError, _merge, config_from_dict, config_to_dict, parse_overrides
    from .data import build_dataset, plain_images
    from .tasks import build_task
    from .trained import load_trained

    device = resolve_device(device)
    trained = load_trained(checkpoint_path, device)
    model, config = trained.model, trained.config
    if overrides:
        changes = parse_overrides(overrides)
        if "model" in changes or "task" in changes:
            raise ConfigError("evaluate takes data/train/nvs overrides only: the model is the checkpoint's")
        config = config_from_dict(_merge(config_to_dict(config), changes))
    task = build_task(config)
    try:
        dataset = build_dataset(config, split)
    except ValueError as error:  # the dataset's own list of splits, named as the option that chose it
        raise ConfigError(f"evaluate --split {split}: {error}") from error
    if dataset is None:
        raise ConfigError(f"evaluate --split {split}: the config names no out-of-distribution set "
                          f"(data.ood for images, data.ood_root for view synthesis)")
    dataset = plain_images(dataset)  # training PSNR is on the un-augmented images
    default_out = (Path("runs") / "pretrained" / trained.name if trained.kind == "shipped"
                   else trained.path.parent)
    out_dir = Path(out_dir) if out_dir else default_out
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = evaluate_split(task, model, dataset, device, max_items, config.train.batch_size, progress=True)
    results = {"checkpoint": str(checkpoint_path), "split": split, "step": trained.step,
               "psnr_mean": scores["psnr_mean"], "psnr_std": scores["psnr_std"], "psnr_se": scores["psnr_se"],
               "n": scores["n"]}
    if task.kind == "image":
        from .data import build_ood_dataset

        if split != "ood":
            results.update(ood_scores(task, model, build_ood_dataset(config, dataset[0].shape[-1]), device,
                                      config.train.batch_size))
        figure = write_image_samples(task, model, dataset, device, out_dir / f"samples_{split}.png",
                                     config.train.figure_images)
    else:
        from .data import build_ood_dataset

        results["blank_white_psnr"] = task.blank_white_psnr(dataset, max_items)
        results["psnr_per_object"] = scores["per_item"]
        if split != "ood":
            results.update(ood_scores(task, model, build_ood_dataset(config), device, config.train.batch_size))
        results.update(task.evaluation_settings())
        figure = task.write_samples(model, dataset, device, out_dir)
    results["figure"] = str(figure)
    write_json(out_dir / f"evaluation_{split}.json", results)
    return results


def format_psnr(mean: float, std: float, se: float | None = None) -> str:
    """"mean ± std dB", with the standard error of the mean appended when given."""
    text = f"{mean:.2f} ± {std:.2f} dB" if math.isfinite(std) else f"{mean:.2f} dB"
    return f"{text} (standard error {se:.2f} dB)" if se is not None and math.isfinite(se) else text

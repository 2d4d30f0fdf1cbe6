"""Compare meta-learners on the same data and budget, and write the paper's tables.

    python -m transinr compare CONFIG... [key=value ...] --out DIR

Each config is meta-trained with :func:`transinr.train.train` in ``DIR/runs/<name>``
(re-running resumes, or only re-evaluates a finished run) and scored on the
held-out split (and the out-of-distribution set). The configs must agree on the
task, the data (dataset, split, resolution, augmentation of the training stream,
out-of-distribution set) and the number of training signals seen; anything else — the method,
its size, its learning rate — may differ. View synthesis configs may also differ in
``data.n_support``: every object is scored on the same held-out views (views
``nvs.train_views …``) whether one or two support views come in. ``key=value`` arguments
override every config alike (e.g. ``train.max_images=64000``).

Written to DIR:
  ``results.md``     both tables, as Markdown;
  ``results.csv``    method, parameters, train time, held-out PSNR mean and std, PSNR on
                     (un-augmented) training images and on the out-of-distribution set;
  ``time_to_psnr.csv`` per method: test-time procedure, signals reaching the target,
                     median time per signal, ratio to the reference;
  ``trajectories.json`` per-signal PSNR against test-time wall time, every method;
  ``psnr_vs_time.png`` the same, averaged over signals.

Time to reach PSNR (image tasks): on the first ``time_signals`` held-out images,
each method builds INRs the way it does at test time — one forward pass (Trans-INR,
single-vector, instance pattern), K SGD steps from θ_0 (Learned Init), n Adam
steps from a random init (fitting from scratch, the reference's hyponet) — and the
wall time at which each signal first reaches the target is recorded. The whole
batch is processed at once and its time divided by the batch size, the same for
every method; scoring PSNR along the way is not timed. The target is a fixed
PSNR when given, otherwise, per signal, the PSNR the reference method (the first
Trans-INR config, else the first config) reaches on it.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
from pathlib import Path

import torch

from .config import Config, ConfigError, load_config
from .data import build_dataset
from .fit import Stopwatch, fit_from_scratch, image_psnr
from .models.learned_init import LearnedInit
from .runtime import resolve_device, write_json
from .train import CHECKPOINT_NAME, load_model_from_checkpoint, plan_steps, train

METHOD_LABELS = {
    "trans_inr": "Trans-INR",
    "learned_init": "Learned Init",
    "single_vector": "Single-vector hypernetwork",
    "instance_pattern": "Instance pattern composer",
}
# Data settings that may differ between compared configs: they change how data is
# loaded, never which signals are seen.
DATA_LOADING_KEYS = {"num_workers", "cache_in_memory"}
# render_chunk changes only memory use; render_convention is part of a method (how its
# NeRF is integrated), and every method is scored against the same pixels.
NVS_RENDERING_KEYS = {"render_chunk", "render_convention"}
# View synthesis scores every object on the same held-out views whatever its number of
# support views (data/views.py), so 1- and 2-view runs share one table.
NVS_FREE_DATA_KEYS = {"n_support"}


def method_label(config: Config) -> str:
    return METHOD_LABELS.get(config.model.name, config.model.name)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def training_signals_seen(config: Config, train_size: int) -> int:
    """The training budget: optimisation steps × batch size, as ``train`` plans it."""
    return plan_steps(config, train_size).total_steps * config.train.batch_size


def check_comparable(configs: list[Config], train_size: int) -> int:
    """Raise :class:`ConfigError` unless the configs share task, data and budget.

    Returns the common number of training signals seen.
    """
    if not configs:
        raise ConfigError("compare needs at least one config")
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"configs share the name(s) {', '.join(duplicates)}: each needs its own "
                          f"`name` (it names its run folder and its table row)")
    problems = []

    def same(field_name: str, values: dict) -> None:
        # A nested section (data.augment) compares as a whole.
        values = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in values.items()}
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            listed = "; ".join(f"{name}: {value!r}" for name, value in values.items())
            problems.append(f"{field_name} differs ({listed})")

    def same_section(section: str, ignored: set) -> None:
        for key in dataclasses.asdict(getattr(configs[0], section)):
            if key not in ignored:
                same(f"{section}.{key}", {c.name: getattr(getattr(c, section), key) for c in configs})

    same("task", {c.name: c.task for c in configs})
    view_synthesis = configs[0].task == "nvs" and all(c.task == "nvs" for c in configs)
    same_section("data", DATA_LOADING_KEYS | (NVS_FREE_DATA_KEYS if view_synthesis else set()))
    if configs[0].task == "nvs":
        same_section("nvs", NVS_RENDERING_KEYS)
    budgets = {c.name: training_signals_seen(c, train_size) for c in configs}
    same("training signals seen (steps × batch size)", budgets)
    if problems:
        raise ConfigError("the configs cannot share one table: " + " | ".join(problems)
                          + ". Make them agree, or override them all alike with key=value.")
    return budgets[configs[0].name]


# --------------------------------------------------------------------------- test-time trajectories

def feedforward_trajectory(model, images: torch.Tensor, repeats: int = 3) -> dict:
    """One forward pass builds every INR: its time (best of ``repeats``) and the PSNR it gives."""
    model.eval()
    timings = []
    with torch.no_grad():
        model(images)  # warm-up: first calls pay for allocation and kernel selection
        for _ in range(repeats):
            clock = Stopwatch(images.device)
            clock.start()
            weights = model(images)
            timings.append(clock.stop())
        psnr = image_psnr(model.hyponet, weights, images)
    return {"steps": [1], "seconds": [min(timings)], "psnr": [psnr.tolist()],
            "procedure": "1 forward pass"}


def learned_init_trajectory(model: LearnedInit, images: torch.Tensor, steps: int | None = None) -> dict:
    """θ_0, then the PSNR after each of the K test-time SGD steps and their time."""
    model.eval()
    steps = model.test_inner_steps if steps is None else steps
    clock = Stopwatch(images.device)
    with torch.no_grad():
        model(images, steps=1)  # warm-up
        first = image_psnr(model.hyponet, model.initial_weights(images.shape[0]), images)
        history = {"steps": [0], "seconds": [0.0], "psnr": [first.tolist()]}

        def record(step: int, weights) -> None:
            clock.stop()
            history["steps"].append(step)
            history["seconds"].append(clock.elapsed)
            history["psnr"].append(image_psnr(model.hyponet, weights, images).tolist())
            clock.start()

        clock.start()
        model(images, steps=steps, on_step=record)
        clock.stop()
    history["procedure"] = f"{steps} SGD steps from θ_0"
    return history


def scratch_trajectory(hyponet, images: torch.Tensor, steps: int, lr: float, record_every: int,
                       progress: bool = False) -> dict:
    fitted = fit_from_scratch(hyponet, images, steps, lr, record_every, progress=progress)
    return {"steps": fitted["steps"], "seconds": fitted["seconds"], "psnr": fitted["psnr"],
            "procedure": f"{steps} Adam steps (lr {lr:g}) from a random init"}


def time_to_reach(trajectory: dict, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per signal: seconds and steps until its PSNR first reaches its target (inf if never).

    Seconds are the batch's wall time divided by the batch size.
    """
    psnr = torch.tensor(trajectory["psnr"])  # (R, B)
    batch = psnr.shape[1]
    reached = psnr >= targets.unsqueeze(0) - 1e-6
    seconds = torch.tensor(trajectory["seconds"]).unsqueeze(1).expand_as(psnr) / batch
    steps = torch.tensor(trajectory["steps"], dtype=torch.float64).unsqueeze(1).expand_as(psnr)
    never = torch.full_like(seconds, math.inf)
    first_seconds = torch.where(reached, seconds, never).min(dim=0).values
    first_steps = torch.where(reached, steps, never.double()).min(dim=0).values
    return first_seconds, first_steps


def lower_median(values: torch.Tensor) -> float:
    """The median (lower middle for even counts), so an inf only wins if most are inf."""
    return values.sort().values[(len(values) - 1) // 2].item()


# --------------------------------------------------------------------------- formatting

def result_row(config: Config, results: dict, parameters: int) -> dict:
    """One table row from a run's ``results.json`` (OOD, train PSNR and baselines empty
    where not scored). View synthesis rows name their number of support views in the
    method, since 1- and 2-view runs share a table."""
    def rounded(key: str):
        return round(results[key], 3) if key in results else None

    method = method_label(config)
    if config.task == "nvs":
        views = config.data.n_support
        method += f" ({views} view{'s' if views > 1 else ''})"
    return {"method": method, "config": config.name, "task": config.task, "parameters": parameters,
            "train_seconds": results["train_seconds"], "training_signals": results["images_seen"],
            "test_psnr_mean": rounded("test_psnr_mean"), "test_psnr_std": rounded("test_psnr_std"),
            "test_psnr_se": rounded("test_psnr_se"), "test_signals": results["test_items"],
            "train_psnr_mean": rounded("train_psnr_mean"),
            "ood_psnr_mean": rounded("ood_psnr_mean"), "ood_psnr_std": rounded("ood_psnr_std"),
            "ood_psnr_se": rounded("ood_psnr_se"), "ood_signals": results.get("ood_items"),
            "ood_split": results.get("ood_split", "test"),
            "blank_white_psnr": rounded("blank_white_psnr"), "ood_blank_white_psnr": rounded("ood_blank_white_psnr")}


def object_standard_error(row: dict, prefix: str) -> float | None:
    """The standard error over objects of a view-synthesis row's ``prefix`` ("test", "ood")
    PSNR, None for image rows: 3D tables show mean ± standard error, so that ≥ 100
    held-out objects rank methods with an error bar."""
    return row.get(f"{prefix}_psnr_se") if row.get("task") == "nvs" else None


def format_optional(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def format_count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 100_000 else f"{n:,}"


def format_seconds(seconds: float) -> str:
    if seconds == 0:
        return "0 s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def format_duration(seconds: float) -> str:
    """Training times: seconds, minutes or hours."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> None:
    """One column per field of any row, in first-seen order; a row without a field leaves it empty
    (a study table keeps rows recorded by an older release, which lack the newer fields)."""
    fieldnames = list(dict.fromkeys(field for row in rows for field in row))
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def plot_psnr_vs_time(trajectories: dict[str, dict], path: Path) -> Path:
    from .viz import psnr_vs_time_figure, save_figure

    return save_figure(psnr_vs_time_figure(trajectories), path)


# --------------------------------------------------------------------------- the command

def compare(configs: list[Config], out_dir: str | Path, device: str | None = None, progress: bool = True,
            target_psnr: float | None = None, time_signals: int = 32, scratch_steps: int = 500,
            scratch_lr: float = 1e-3, record_every: int = 10) -> dict:
    """Train and score every config, then write the tables to ``out_dir``.

    Returns {"rows": main-table rows, "time_rows": time-to-PSNR rows (image tasks),
    "markdown": the text of results.md}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not configs:
        raise ConfigError("compare needs at least one config")
    train_size = len(build_dataset(configs[0], "train"))
    budget = check_comparable(configs, train_size)

    entries = []
    for config in configs:
        run_dir = out_dir / "runs" / config.name
        results = train(config, run_dir, device=device, progress=progress)
        model, _, _ = load_model_from_checkpoint(run_dir / CHECKPOINT_NAME,
                                                 resolve_device(device or config.train.device))
        entries.append({"config": config, "results": results, "model": model,
                        "parameters": count_parameters(model), "run_dir": run_dir})

    rows = [result_row(e["config"], e["results"], e["parameters"]) for e in entries]
    write_csv(out_dir / "results.csv", rows)

    data = configs[0].data
    first = entries[0]["results"]
    views = configs[0].task == "nvs"

    def spread(row: dict, prefix: str):
        return object_standard_error(row, prefix) if views else row[f"{prefix}_psnr_std"]

    summary = (f"held-out PSNR: mean ± standard error over the {first['test_items']} test objects, "
               f"each object's PSNR the mean over its held-out views" if views else
               f"held-out PSNR (mean ± std) over the {first['test_items']} signals of the test split")
    lines = [f"# Comparison on {data.name} at {data.resolution} px",
             "",
             f"Every method saw {budget:,} training signals; {summary}.",
             "",
             markdown_table(
                 ["Method", "Config", "Parameters", "Train time", "Held-out PSNR (dB)", "Train PSNR (dB)",
                  "OOD PSNR (dB)"],
                 [[r["method"], f"`{r['config']}`", format_count(r["parameters"]),
                   format_duration(r["train_seconds"]), format_optional(r["test_psnr_mean"], spread(r, "test")),
                   format_optional(r["train_psnr_mean"]), format_optional(r["ood_psnr_mean"], spread(r, "ood"))]
                  for r in rows])]
    if views:
        lines += ["", f"Rendering a blank white image for every held-out view: {first['blank_white_psnr']:.2f} dB."]
        if first.get("ood_items"):
            which = "" if first.get("ood_split", "test") == "test" else "objects (every split) "
            lines += ["", f"OOD: the {first['ood_items']} {which or 'test objects '}of `data.ood_root` ({first['ood_root']}), "
                          f"scored on the same held-out views; a blank white image scores "
                          f"{first['ood_blank_white_psnr']:.2f} dB there."]
    elif first.get("ood_items"):
        lines += ["", f"OOD: the {first['ood_items']} procedural textures of `data.ood: textures` "
                      f"(transinr/data/textures.py), never seen in training. Train PSNR: "
                      f"{first['train_items']} un-augmented training images evenly spaced over the split."]
    if "mean_image_psnr" in first:
        lines += ["", f"Predicting the mean training image for every test image: "
                      f"{first['mean_image_psnr']:.2f} dB."]

    time_rows = []
    if configs[0].task == "image":
        time_rows, time_lines = time_to_psnr(entries, configs[0], out_dir, target_psnr, time_signals,
                                             scratch_steps, scratch_lr, record_every, progress)
        lines += [""] + time_lines
    else:
        lines += ["", "(The time-to-PSNR table is measured for image tasks only.)"]
    markdown = "\n".join(lines) + "\n"
    (out_dir / "results.md").write_text(markdown)
    return {"rows": rows, "time_rows": time_rows, "markdown": markdown}


def time_to_psnr(entries: list[dict], config: Config, out_dir: Path, target_psnr: float | None,
                 time_signals: int, scratch_steps: int, scratch_lr: float, record_every: int,
                 progress: bool) -> tuple[list[dict], list[str]]:
    """Measure every method's test-time trajectory; write the CSV, JSON and figure."""
    test_set = build_dataset(config, "test")
    n = min(time_signals, len(test_set))
    device = next(entries[0]["model"].parameters()).device
    images = torch.stack([test_set[i] for i in range(n)]).to(device)
    reference = next((e for e in entries if e["config"].model.name == "trans_inr"), entries[0])

    trajectories: dict[str, dict] = {}
    for entry in entries:
        model = entry["model"]
        key = f"{method_label(entry['config'])} ({entry['config'].name})"
        if isinstance(model, LearnedInit):
            trajectories[key] = learned_init_trajectory(model, images)
        else:
            trajectories[key] = feedforward_trajectory(model, images)
    reference_key = f"{method_label(reference['config'])} ({reference['config'].name})"
    scratch_key = "Fitting from scratch"
    trajectories[scratch_key] = scratch_trajectory(reference["model"].hyponet, images, scratch_steps,
                                                   scratch_lr, record_every, progress)

    if target_psnr is None:
        targets = torch.tensor(trajectories[reference_key]["psnr"][-1])
        target_text = f"the PSNR {reference_key} reaches on each signal (mean {targets.mean():.2f} dB)"
    else:
        targets = torch.full((n,), float(target_psnr))
        target_text = f"{target_psnr:.2f} dB"

    reference_seconds = lower_median(time_to_reach(trajectories[reference_key], targets)[0])
    time_rows, table = [], []
    for key, trajectory in trajectories.items():
        seconds, steps = time_to_reach(trajectory, targets)
        median_seconds, median_steps = lower_median(seconds), lower_median(steps)
        ratio = median_seconds / reference_seconds if reference_seconds > 0 else math.nan
        final_psnr = torch.tensor(trajectory["psnr"][-1]).mean().item()
        reached = int(torch.isfinite(seconds).sum())
        budget_seconds = trajectory["seconds"][-1] / n
        time_rows.append({"method": key, "procedure": trajectory["procedure"], "final_psnr": round(final_psnr, 3),
                          "signals_reaching_target": reached, "signals": n,
                          "median_seconds_per_signal": median_seconds, "median_steps": median_steps,
                          "ratio_to_reference": ratio, "seconds_per_signal_total": budget_seconds})
        if math.isfinite(median_seconds):
            time_text, ratio_text = format_seconds(median_seconds), f"{ratio:.1f}×"
            steps_text = f"{median_steps:.0f}"
        else:  # most signals never got there: what was spent is a lower bound
            time_text = f"> {format_seconds(budget_seconds)} (not reached)"
            ratio_text = (f"> {budget_seconds / reference_seconds:.1f}×" if reference_seconds > 0 else "—")
            steps_text = f"> {trajectory['steps'][-1]}"
        table.append([key, trajectory["procedure"], f"{final_psnr:.2f}", f"{reached}/{n}", steps_text,
                      time_text, ratio_text])
    write_csv(out_dir / "time_to_psnr.csv", time_rows)
    write_json(out_dir / "trajectories.json", {"targets": targets.tolist(), "signals": n,
                                                 "trajectories": trajectories})
    plot_psnr_vs_time(trajectories, out_dir / "psnr_vs_time.png")
    lines = [f"## Time to reach PSNR at test time ({n} held-out signals)",
             "",
             f"Target: {target_text}. Time per signal = wall time for the batch of {n} / {n} on "
             f"{device}; median over signals (a signal that never reaches the target counts as "
             f"infinitely slow).",
             "",
             markdown_table(["Method", "Test-time procedure", "PSNR at the end (dB)", "Reached target",
                             "Median steps", "Median time to target", f"× {reference_key}"], table)]
    return time_rows, lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transinr compare",
        description="Meta-train configs on the same data and budget; write the PSNR and "
                    "time-to-PSNR tables (Markdown + CSV).")
    parser.add_argument("configs", nargs="+", metavar="CONFIG",
                        help="shipped config names or YAML paths; items of the form key=value "
                             "override every config alike (e.g. train.max_images=64000)")
    parser.add_argument("--out", required=True, help="output folder (runs/ and the tables go here)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, … (default: each config's)")
    parser.add_argument("--target-psnr", type=float, default=None,
                        help="fixed target in dB (default: the reference method's PSNR on each signal)")
    parser.add_argument("--time-signals", type=int, default=32, help="held-out signals timed (default 32)")
    parser.add_argument("--scratch-steps", type=int, default=500, help="Adam steps when fitting from scratch")
    parser.add_argument("--scratch-lr", type=float, default=1e-3, help="Adam learning rate from scratch")
    parser.add_argument("--record-every", type=int, default=10, help="fit-from-scratch steps between PSNR records")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def cli_main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    overrides = [item for item in args.configs if "=" in item]
    names = [item for item in args.configs if "=" not in item]
    if not names:
        raise ConfigError("compare: give at least one config (a shipped name or a YAML path)")
    configs = [load_config(name, overrides) for name in names]
    outcome = compare(configs, args.out, device=args.device, progress=not args.quiet,
                      target_psnr=args.target_psnr, time_signals=args.time_signals,
                      scratch_steps=args.scratch_steps, scratch_lr=args.scratch_lr,
                      record_every=args.record_every)
    print(outcome["markdown"])
    print(f"tables written to {Path(args.out) / 'results.md'}")
    return outcome


if __name__ == "__main__":
    cli_main()

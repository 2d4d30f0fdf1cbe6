"""Scaling study: every method at growing budgets of training signals, Trans-INR at several sizes.

    python -m transinr scale emoji32_scale --out results/scale_emoji32 [--budgets 16000 64000]

A study file (``transinr/configs/studies/<name>.yaml``, or a path) names the methods
(label → config), the budgets (training signals seen), the overrides every run
shares (the augmented training stream) and the model sizes tried for one method
(``sizes_for``, Trans-INR). Each run is an ordinary :func:`transinr.train.train` run
in ``RUNS/<run name>`` (``--runs-dir``, default ``OUT/runs``): re-running the command skips finished runs, resumes
unfinished ones from their checkpoints, and starts the rest. The runs of one budget
must be comparable as ``compare`` requires (same data, augmentation and budget).

After every run the tables are rewritten, so they hold whatever has finished:
  ``scale.md`` / ``scale.csv`` / ``scale.json``  one row per run: method, size, budget,
        parameters, training wall time, held-out, train and out-of-distribution PSNR;
  ``scale.png``  those three PSNRs against the budget and against training wall time.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .compare import (check_comparable, count_parameters, format_count, format_duration, format_optional,
                      markdown_table, object_standard_error, result_row, write_csv)
from .config import CONFIG_DIR, Config, ConfigError, load_config, resolve_shipped_yaml
from .data import build_dataset
from .models import build_model
from .tasks import build_task
from .train import run_config_changes, train

STUDY_DIR = CONFIG_DIR / "studies"
STUDY_KEYS = {"name", "budgets", "overrides", "methods", "sizes", "sizes_for"}


@dataclass
class Study:
    name: str
    budgets: list[int]
    methods: dict[str, str]  # label → config name or path
    overrides: list[str] = field(default_factory=list)
    sizes: dict[str, list[str]] = field(default_factory=dict)  # size label → overrides
    sizes_for: str | None = None  # the method label the sizes apply to


@dataclass
class PlannedRun:
    method: str
    size: str
    budget: int
    config: Config


def resolve_study_path(name_or_path: str | Path) -> Path:
    return resolve_shipped_yaml(name_or_path, STUDY_DIR, "study")


def _strings(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ConfigError(f"{where}: expected a list of key=value strings, got {value!r}")
    return value


def load_study(name_or_path: str | Path) -> Study:
    """A study file, read strictly: unknown keys and wrong types are errors naming the key."""
    path = resolve_study_path(name_or_path)
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(sorted(STUDY_KEYS))}")
    unknown = sorted(set(values) - STUDY_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(STUDY_KEYS))}")
    budgets = values.get("budgets")
    if not isinstance(budgets, list) or not budgets or not all(isinstance(b, int) and b > 0 for b in budgets):
        raise ConfigError(f"{path}: budgets: expected a list of positive integers, got {budgets!r}")
    methods = values.get("methods")
    if not isinstance(methods, dict) or not methods or not all(isinstance(v, str) for v in methods.values()):
        raise ConfigError(f"{path}: methods: expected a mapping label → config name, got {methods!r}")
    sizes = values.get("sizes") or {}
    if not isinstance(sizes, dict):
        raise ConfigError(f"{path}: sizes: expected a mapping label → list of key=value, got {sizes!r}")
    sizes = {str(k): _strings(v or [], f"{path}: sizes.{k}") for k, v in sizes.items()}
    sizes_for = values.get("sizes_for")
    if sizes and sizes_for not in methods:
        raise ConfigError(f"{path}: sizes_for: expected one of the method labels {', '.join(methods)}, "
                          f"got {sizes_for!r}")
    return Study(name=str(values.get("name", path.stem)), budgets=sorted(budgets), methods=methods,
                 overrides=_strings(values.get("overrides") or [], f"{path}: overrides"), sizes=sizes,
                 sizes_for=sizes_for)


def budget_label(budget: int) -> str:
    """16000 → "16k", 1000000 → "1M"."""
    if budget % 1_000_000 == 0:
        return f"{budget // 1_000_000}M"
    if budget % 1000 == 0:
        return f"{budget // 1000}k"
    return str(budget)


def plan_runs(study: Study, budgets: list[int] | None = None, methods: list[str] | None = None,
              sizes: list[str] | None = None, extra: list[str] | None = None) -> list[PlannedRun]:
    """Every run of the study (or of the chosen budgets, methods, sizes), smallest budget first.

    Within a budget, every method at its config's size comes first, then the other sizes.
    """
    budgets = sorted(budgets or study.budgets)
    chosen = methods or list(study.methods)
    for label in chosen:
        if label not in study.methods:
            raise ConfigError(f"unknown method {label!r}; the study has {', '.join(study.methods)}")
    size_labels = sizes if sizes is not None else list(study.sizes)
    for label in size_labels:
        if label not in study.sizes:
            raise ConfigError(f"unknown size {label!r}; the study has {', '.join(study.sizes) or 'none'}")
    runs = []
    for budget in budgets:
        shared = study.overrides + list(extra or []) + [f"train.max_images={budget}"]

        def planned(method: str, size: str, size_overrides: list[str]) -> PlannedRun:
            name = f"{method}_{size}_{budget_label(budget)}" if size else f"{method}_{budget_label(budget)}"
            config = load_config(study.methods[method], shared + size_overrides + [f"name={name}"])
            return PlannedRun(method, size, budget, config)

        runs += [planned(m, "", []) for m in chosen]
        if study.sizes_for in chosen:
            runs += [planned(study.sizes_for, s, study.sizes[s]) for s in size_labels if study.sizes[s]]
    return runs


def finished_results(run: PlannedRun, run_dir: Path) -> dict | None:
    """The run's results if it finished with this very config, else None (train or resume it)."""
    results_path, config_path = run_dir / "results.json", run_dir / "config.yaml"
    if not (results_path.exists() and config_path.exists()):
        return None
    results = json.loads(results_path.read_text())
    stored = yaml.safe_load(config_path.read_text())
    if run_config_changes(stored, run.config, str(config_path)):
        return None  # train() explains the difference, or resumes
    if run.config.task == "nvs" and run.config.data.ood_root and "ood_psnr_mean" not in results:
        return None  # an OOD set named after the run finished: train() only re-evaluates it
    return results if results.get("images_seen", 0) >= run.budget else None


def run_study(study: Study, out_dir: str | Path, runs: list[PlannedRun], device: str | None = None,
              progress: bool = True, report_only: bool = False, runs_dir: str | Path | None = None,
              report_runs: list[PlannedRun] | None = None) -> list[dict]:
    """Train (or skip, or resume) every planned run; rewrite the tables after each. Returns the rows.

    Run folders go to ``runs_dir`` (default ``out_dir/runs``), the tables to ``out_dir``.
    The tables hold every finished run of ``report_runs`` and ``runs``, so a study
    run one budget at a time (``--budgets 64000`` after ``--budgets 16000``) keeps the rows
    of the budgets it did not touch this time.

    A study outlives its run folders (checkpoints stay on the machine that trained them;
    the tables are what gets committed). A run whose folder holds no results is therefore
    taken as finished when ``out_dir/scale.json`` already records it (same run name and
    budget): its recorded row is kept and it is not trained again. To re-measure such a
    run, remove its row or write the study to a new ``out_dir``.
    """
    out_dir = Path(out_dir)
    runs_dir = Path(runs_dir) if runs_dir else out_dir / "runs"
    out_dir.mkdir(parents=True, exist_ok=True)
    train_size = len(build_dataset(runs[0].config, "train"))
    for budget in sorted({r.budget for r in runs}):
        check_comparable([r.config for r in runs if r.budget == budget], train_size)
    task = build_task(runs[0].config)
    image_size = task.image_size(task.datasets()[1])  # the size the models are built for
    report_runs = list(runs if report_runs is None else report_runs)
    report_runs += [run for run in runs if run.config.name not in {r.config.name for r in report_runs}]
    recorded = recorded_rows(out_dir / "scale.json", runs_dir)
    trained_now = {}

    def finished_rows() -> list[dict]:
        rows = []
        for run in report_runs:
            results = trained_now.get(run.config.name) or finished_results(run, runs_dir / run.config.name)
            if results is not None:
                parameters = count_parameters(build_model(run.config, image_size))
                rows.append({"method": run.method, "size": run.size or "config", "budget": run.budget,
                             **result_row(run.config, results, parameters)})
            elif (run.config.name, run.budget) in recorded:
                rows.append(recorded[run.config.name, run.budget])
        return rows

    for index, run in enumerate(runs, 1):
        if report_only or finished_results(run, runs_dir / run.config.name) is not None:
            continue
        if (run.config.name, run.budget) in recorded:
            print(f"[{index}/{len(runs)}] {run.config.name}: recorded in {out_dir / 'scale.json'}, not retrained",
                  flush=True)
            continue
        print(f"[{index}/{len(runs)}] {run.config.name}", flush=True)
        trained_now[run.config.name] = train(run.config, runs_dir / run.config.name, device=device,
                                             progress=progress)
        write_tables(study, finished_rows(), out_dir)
    rows = finished_rows()
    if rows:
        write_tables(study, rows, out_dir)
    return rows


def recorded_rows(table_path: Path, runs_dir: Path) -> dict[tuple[str, int], dict]:
    """Rows of an earlier ``scale.json`` whose run folders hold no results here, by (run name, budget)."""
    if not table_path.exists():
        return {}
    try:
        rows = json.loads(table_path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{table_path}: not a study table written by `transinr scale` ({error}); "
                          f"move it away to start the table afresh") from error
    return {(row["config"], row["budget"]): row for row in rows
            if not (runs_dir / row["config"] / "results.json").exists()}


def write_tables(study: Study, rows: list[dict], out_dir: Path) -> None:
    if not rows:
        return  # nothing has finished yet
    write_csv(out_dir / "scale.csv", rows)
    (out_dir / "scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = [[r["method"] + (f" ({r['size']})" if r["size"] != "config" else ""), f"`{r['config']}`",
              f"{r['budget']:,}", format_count(r["parameters"]), format_duration(r["train_seconds"]),
              format_optional(r["test_psnr_mean"], object_standard_error(r, "test")),
              format_optional(r["train_psnr_mean"]),
              format_optional(r["ood_psnr_mean"], object_standard_error(r, "ood"))] for r in rows]
    if rows[0].get("task") == "nvs":
        first = rows[0]
        legend = (f"Held-out: the {first['test_signals']} test objects, each object's PSNR the mean over its "
                  f"held-out views; mean ± standard error over objects (blank white image: "
                  f"{format_optional(first['blank_white_psnr'])}). OOD: the "
                  f"{'test objects' if first.get('ood_split', 'test') == 'test' else 'objects (every split)'} "
                  f"of `data.ood_root`, "
                  f"the same held-out views (blank white: {format_optional(first['ood_blank_white_psnr'])}). "
                  f"PSNR in dB.")
    else:
        legend = ("Held-out: the un-augmented test split; train: as many un-augmented training images, "
                  "evenly spaced over the training split; OOD: the procedural textures. PSNR in dB, means over "
                  "signals.")
    text = [f"# Scaling study `{study.name}`", "",
            legend + " Train time is the wall time of the optimisation steps on the machine that ran them.", "",
            markdown_table(["Method", "Run", "Signals seen", "Parameters", "Train time", "Held-out",
                            "Train", "OOD"], table)]
    (out_dir / "scale.md").write_text("\n".join(text) + "\n")
    plot_study(rows, out_dir / "scale.png")


def plot_series(rows: list[dict]) -> dict[str, list[dict]]:
    """The study's rows grouped into one line per method and size, by legend label.

    The rows' ``method`` is the display name, which two methods can share (both Learned
    Inits); the run name without its budget (``learned_init_paper`` of
    ``learned_init_paper_256k``) tells them apart and is added to the label where needed.
    """
    def stem(row: dict) -> str:
        return row["config"].removesuffix("_" + budget_label(row["budget"]))

    def label(row: dict) -> str:
        return row["method"] + (f" ({row['size']})" if row["size"] != "config" else "")

    stems_of: dict[str, set[str]] = {}
    for row in rows:
        stems_of.setdefault(label(row), set()).add(stem(row))
    series: dict[str, list[dict]] = {}
    for row in rows:
        name = label(row) + (f" [{stem(row)}]" if len(stems_of[label(row)]) > 1 else "")
        series.setdefault(name, []).append(row)
    return series


def plot_study(rows: list[dict], path: Path) -> Path:
    """Held-out, train and OOD PSNR (columns) against budget and training time (rows)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from .viz import save_figure

    series = plot_series(rows)
    metrics = [("test_psnr_mean", "held-out PSNR (dB)"), ("train_psnr_mean", "train PSNR (dB)"),
               ("ood_psnr_mean", "OOD PSNR (dB)")]
    axes_x = [("training_signals", "training signals seen"), ("train_seconds", "training wall time (s)")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), squeeze=False)
    for r, (x_key, x_label) in enumerate(axes_x):
        for c, (y_key, y_label) in enumerate(metrics):
            ax = axes[r, c]
            plotted = False
            for label, points in series.items():
                points = sorted((p for p in points if p[y_key] is not None and p[x_key] > 0),
                                key=lambda p: p[x_key])
                if points:
                    ax.plot([p[x_key] for p in points], [p[y_key] for p in points], "o-", label=label)
                    plotted = True
            if plotted:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overprint each other
                if x_key == "training_signals":
                    ax.set_xticks(sorted({p[x_key] for points in series.values() for p in points}))
                    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: budget_label(int(round(x)))))
            ax.set_xlabel(x_label)
            ax.set_ylabel(y_label)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def cli_main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="transinr scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default="emoji32_scale", help="a shipped study name or a YAML path")
    parser.add_argument("overrides", nargs="*", help="key=value applied to every run (after the study's)")
    parser.add_argument("--out", required=True, help="output folder (runs/ and the tables go here)")
    parser.add_argument("--runs-dir", default=None, help="run folders (checkpoints) go here (default OUT/runs)")
    parser.add_argument("--budgets", type=int, nargs="+", default=None, help="only these budgets of the study")
    parser.add_argument("--methods", nargs="+", default=None, help="only these method labels")
    parser.add_argument("--sizes", nargs="*", default=None, help="only these model sizes (none: no extra sizes)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--report-only", action="store_true", help="rewrite the tables from finished runs; train nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    study = load_study(args.study)
    runs = plan_runs(study, args.budgets, args.methods, args.sizes, args.overrides)
    every_run = plan_runs(study, extra=args.overrides)  # the tables report all that has finished
    rows = run_study(study, args.out, runs, device=args.device, progress=not args.quiet,
                     report_only=args.report_only, runs_dir=args.runs_dir, report_runs=every_run)
    if rows:
        print((Path(args.out) / "scale.md").read_text())
    return rows


if __name__ == "__main__":
    cli_main()

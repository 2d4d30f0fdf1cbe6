"""Meta-training: one loop for every task and model.

A run lives in one folder: ``config.yaml``, ``environment.json``, ``metrics.jsonl``
(one JSON object a line), ``checkpoint.pt`` (the latest, written atomically) and,
at the end, ``results.json`` and ``samples.png``. Running ``train`` again on the same
folder resumes from the checkpoint: model, optimiser, step, RNG states and the
position in the epoch's sample order are all restored, so an interrupted run
continues exactly as if it had not stopped.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from .checkpoint import (CheckpointError, atomic_save, build_model_for, first_non_finite, load_state_strict,
                         remove_stale_temporaries, rng_state, safe_load, set_rng_state)
from .config import Config, config_to_dict, stored_config, validate
from .distributed import ProcessGroup, all_finite, barrier, init_process_group, shutdown
from .models import build_model
from .run_lock import RunLock
from .runtime import (autocast_for, check_amp, environment_record, resolve_device, seed_everything,
                      write_json)
from .tasks import build_task

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "transinr-checkpoint-v1"


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (or weights); the run stops, checkpoints kept."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class EpochSampler(Sampler):
    """A fresh permutation per epoch from (seed, epoch), optionally starting mid-way.

    The order depends on nothing but the seed and the epoch number, so a resumed run
    can skip exactly the batches it had already seen. Under data parallelism, rank r
    of W takes the r-th slice of each global batch of ``global_batch`` indices.
    """

    def __init__(self, size: int, seed: int, epoch: int, start: int = 0, global_batch: int = 1,
                 rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.epoch, self.start = size, seed, epoch, start
        self.global_batch, self.rank, self.world_size = global_batch, rank, world_size

    def order(self) -> list[int]:
        return torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch)).tolist()

    def indices(self) -> list[int]:
        remaining = self.order()[self.start:]
        if self.world_size == 1:
            return remaining
        local = self.global_batch // self.world_size
        n_batches = len(remaining) // self.global_batch
        return [index for b in range(n_batches)
                for index in remaining[b * self.global_batch + self.rank * local:
                                       b * self.global_batch + (self.rank + 1) * local]]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return len(self.indices())


def learning_rate(step: int, total_steps: int, config) -> float:
    """Linear warm-up, then the paper's schedule: ×factor after ``lr_decay_at`` of the steps."""
    t = config.train
    lr = t.lr
    if t.warmup_steps and step < t.warmup_steps:
        lr *= (step + 1) / t.warmup_steps
    if step >= int(t.lr_decay_at * total_steps):
        lr *= t.lr_decay_factor
    return lr


@dataclass
class Plan:
    steps_per_epoch: int
    total_steps: int


def plan_steps(config: Config, train_size: int) -> Plan:
    batch = config.train.batch_size
    if train_size < batch:
        raise ValueError(f"the training set has {train_size} items, fewer than one batch of {batch}")
    per_epoch = train_size // batch
    if config.train.max_images is not None:
        total = math.ceil(config.train.max_images / batch)
    else:
        total = max(1, round(config.train.epochs * per_epoch))
    return Plan(per_epoch, total)


# Smoke mode (TRANSINR_SMOKE=1, set in CI) runs the ``train`` command end to end — data,
# model, a few steps, checkpoint, final evaluation, figure — in seconds rather than its budget.
SMOKE_STEPS = 3


def smoke_budget(config: Config) -> Config:
    """A copy of ``config`` that trains at most :data:`SMOKE_STEPS` steps (everything else as is)."""
    smoke = copy.deepcopy(config)
    cap = SMOKE_STEPS * smoke.train.batch_size
    smoke.train.max_images = cap if smoke.train.max_images is None else min(smoke.train.max_images, cap)
    return smoke


# Parts of the config that may change between a run and its resumption.
RESUMABLE_CHANGES = {"device", "num_workers", "ood", "ood_root", "log_every", "checkpoint_every", "eval_every",
                     "eval_images", "figure_images", "render_chunk", "eval_views", "tto_steps", "tto_lr",
                     "tto_rays", "tto_batch", "evaluate_with_tto", "turntable_frames",
                     "probe_every"}  # the probe draws none of the run's random numbers (tested)


def run_config_changes(stored_values: dict, config: Config, where: str) -> list[str]:
    """What differs between a run folder's stored config and ``config`` ("key: old → new").

    The stored config is read through today's dataclasses: a key added since it was
    written takes its default (or, where a default changed, the value the run was built
    with), so an older run still counts as the same run if nothing it set changed.
    """
    stored = config_to_dict(stored_config(stored_values, where))
    return _config_differences(_settings_in_use(stored), _settings_in_use(config_to_dict(config)))


def _settings_in_use(values: dict) -> dict:
    """A config dict without the settings it ignores: with ``data.root`` given, the
    embedded set's size (``data.n_objects``) says nothing about the data."""
    if values.get("data", {}).get("root"):
        values = {**values, "data": {k: v for k, v in values["data"].items() if k != "n_objects"}}
    return values


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    differences = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b and key not in RESUMABLE_CHANGES:
            differences.append(f"{prefix}{key}: {a!r} → {b!r}")
    return differences


def read_metrics(path: str | Path, warn: bool = False) -> list[dict]:
    """The records of a ``metrics.jsonl``, skipping lines that are not JSON objects.

    A kill or a full disk in the middle of a write leaves a torn last line; the run's
    checkpoint is still good, so such a line is dropped (with a warning when ``warn``)
    rather than making the run unreadable.
    """
    records, torn = [], []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            torn.append(number)
    if torn and warn:
        lines = ", ".join(map(str, torn[:5])) + (" …" if len(torn) > 5 else "")
        warnings.warn(f"{path}: dropped {len(torn)} line(s) that are not complete JSON records "
                      f"(line {lines}; a write cut short by a kill or a full disk)", stacklevel=3)
    return records


class MetricsLog:
    """Append-only JSON-lines metrics; lines past the step training restarts from are dropped.

    A fresh start (``resume_step`` None) drops every line: a run killed before its
    first checkpoint starts over at step 0 and must not log its first steps twice.
    """

    def __init__(self, path: Path, resume_step: int | None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            records = read_metrics(path, warn=True)
            kept = [record for record in records if record.get("step", 0) <= (resume_step or 0)]
            # Rewritten through a temporary file: a kill now must not lose the log.
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text("".join(json.dumps(record) + "\n" for record in kept))
            os.replace(temporary, path)

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as file:
                file.write(json.dumps(record) + "\n")


def build_optimizer(model: torch.nn.Module, config: Config) -> torch.optim.Optimizer:
    """Adam; the fused kernel (one pass over all parameters) where the device has it."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    kwargs = dict(lr=config.train.lr, weight_decay=config.train.weight_decay)
    try:
        return torch.optim.Adam(parameters, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(parameters, **kwargs)


def checkpoint_payload(model, optimizer, config, step, epoch, elapsed, image_size, metrics) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "epoch": epoch,
        "elapsed_seconds": elapsed,
        "lr_schedule": {"base_lr": config.train.lr, "decay_at": config.train.lr_decay_at,
                        "decay_factor": config.train.lr_decay_factor,
                        "warmup_steps": config.train.warmup_steps},
        "rng": rng_state(),
        "config": config_to_dict(config),
        "image_size": image_size,
        "metrics": metrics,
    }


def load_model_from_checkpoint(path: str | Path, device="cpu"):
    """(model, config, checkpoint dict) from a checkpoint, loaded weights-only."""
    checkpoint = safe_load(path, expected_format=CHECKPOINT_FORMAT)
    config = stored_config(checkpoint["config"], where=f"{path} config")
    model = build_model_for(config, checkpoint.get("image_size"), checkpoint.get("model") or {}, str(path))
    return model.to(device), config, checkpoint


def train(config: Config, run_dir: str | Path, device: str | None = None, progress: bool = True,
          evaluate_at_end: bool = True) -> dict:
    """Meta-train ``config`` in ``run_dir`` (resuming if it holds a checkpoint).

    Returns the final results dict (also written to ``results.json``). Under ``torchrun``
    every process calls this; rank 0 alone writes metrics, checkpoints and results.
    """
    run_dir = Path(run_dir)
    validate(config)  # a config built in code has not been through load_config's checks
    device = resolve_device(device or config.train.device)
    check_amp(config, device)
    group = init_process_group(device.type)
    try:
        with contextlib.ExitStack() as run_folder:
            return _train(config, run_dir, device, group, progress and group.is_main, evaluate_at_end,
                          run_folder)
    finally:
        shutdown(group)


def _enter_run_folder(run_dir: Path, stack: contextlib.ExitStack) -> None:
    """Create ``run_dir`` (removed again if the run leaves nothing in it) and lock it."""
    if not run_dir.exists():
        run_dir.mkdir(parents=True)
        stack.callback(_remove_if_empty, run_dir)
    stack.enter_context(RunLock(run_dir))


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty: the run wrote something worth keeping
        pass


def _train(config: Config, run_dir: Path, device: torch.device, group: ProcessGroup, progress: bool,
           evaluate_at_end: bool, run_folder: contextlib.ExitStack) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    from .evaluate import evaluate_run_end, evaluate_split

    if group.enabled and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
    if config.train.batch_size % group.world_size:
        raise ValueError(f"train.batch_size {config.train.batch_size} does not split over "
                         f"{group.world_size} processes")
    local_batch = config.train.batch_size // group.world_size
    main = group.is_main
    checkpoint_path = run_dir / CHECKPOINT_NAME

    seed_everything(config.train.seed)
    task = build_task(config)
    train_set, test_set = task.datasets()
    image_size = task.image_size(train_set)
    model = build_model(config, image_size).to(device)
    if config.train.init_from and not checkpoint_path.exists():  # fine-tuning; a resume has its own weights
        from .trained import initialise_from

        initial = initialise_from(model, config)
        if main:
            print(f"starting from the weights of {config.train.init_from} ({initial.kind}, "
                  f"{initial.step:,} steps; a fresh optimiser and learning-rate schedule)")
    optimizer = build_optimizer(model, config)
    plan = plan_steps(config, len(train_set))
    # Only now that the data and the model are known to be usable does the run folder
    # appear, so a bad dataset leaves no empty one behind.
    if main:
        _enter_run_folder(run_dir, run_folder)
    barrier(group)

    step, elapsed, resume_step = 0, 0.0, None
    if main:
        remove_stale_temporaries(checkpoint_path)  # left by a kill in the middle of a save
    if checkpoint_path.exists():
        checkpoint = safe_load(checkpoint_path, expected_format=CHECKPOINT_FORMAT)
        differences = run_config_changes(checkpoint["config"], config, str(checkpoint_path))
        if differences:
            raise CheckpointError(
                f"{run_dir} holds a run with another config ({'; '.join(differences)}); "
                f"use a new --run-dir, or delete {checkpoint_path} to start over"
            )
        load_state_strict(model, checkpoint["model"], str(checkpoint_path))
        optimizer.load_state_dict(checkpoint["optimizer"])
        set_rng_state(checkpoint["rng"])
        step, elapsed, resume_step = checkpoint["step"], checkpoint["elapsed_seconds"], checkpoint["step"]
        if main:
            print(f"resuming {run_dir} from step {step}/{plan.total_steps}")
    elif main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
        environment = environment_record(device)
        environment["world_size"] = group.world_size
        write_json(run_dir / "environment.json", environment)

    log = MetricsLog(run_dir / "metrics.jsonl", resume_step, enabled=main)
    step_model = DistributedDataParallel(model) if group.enabled else model
    if config.train.compile:
        step_model = torch.compile(step_model)
    autocast = autocast_for(config, device)

    def kept_checkpoint() -> str:
        if not checkpoint_path.exists():
            return "no checkpoint had been written yet"
        return f"the last good checkpoint ({checkpoint_path}, step {safe_load(checkpoint_path)['step']}) is kept"

    def save(epoch: int, metrics: dict) -> None:
        if not main:
            return
        # A finite loss can still come with NaN/inf gradients; never let such weights
        # replace the last good checkpoint.
        bad = first_non_finite(model.state_dict())
        if bad is not None:
            bar.close()
            raise NonFiniteLossError(
                f"weights became non-finite ({bad!r}) by step {step} (epoch {epoch}); training "
                f"stopped and {kept_checkpoint()}. Try a lower train.lr or set train.grad_clip."
            )
        atomic_save(checkpoint_payload(model, optimizer, config, step, epoch, elapsed, image_size,
                                       metrics), checkpoint_path)

    from .eta import StepClock, plan_line

    if progress:
        print(plan_line(config.name, plan.total_steps, step, config.train.batch_size, len(train_set),
                        len(test_set), device, run_dir))
    clock = StepClock(plan.total_steps, step)
    bar = tqdm(total=plan.total_steps, initial=step, disable=not progress, desc=config.name,
               unit="step", dynamic_ncols=True)
    running_psnr, last_metrics = None, {}

    probing = main and config.train.probe_every
    if probing:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            probe_batch = task.probe_batch(test_set, device)  # read once: the same objects every time

    def probe() -> None:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            # A probed run trains exactly as an unprobed one: the probe draws no random numbers of its own.
            figures = task.input_dependence_probe(model, probe_batch)
        rounded = {k: [round(x, 4) for x in v] if isinstance(v, list) else round(v, 5) for k, v in figures.items()}
        log.write({"step": step, "split": "probe", **rounded,
                   "train_seconds": round(elapsed, 3)})

    if probing and step == 0:
        probe()  # at initialisation: how much a random model depends on its input
    model.train()
    while step < plan.total_steps:
        epoch, offset = divmod(step, plan.steps_per_epoch)
        sampler = EpochSampler(len(train_set), config.train.seed, epoch,
                               start=offset * config.train.batch_size,
                               global_batch=config.train.batch_size, rank=group.rank,
                               world_size=group.world_size)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        # Without its own generator, every new DataLoader iterator draws its worker seed
        # from the global RNG; a resumed run builds one mid-epoch, which would shift the
        # global RNG (dropout, ray sampling) away from the uninterrupted run's.
        loader = DataLoader(train_set, batch_size=local_batch, sampler=sampler,
                            drop_last=True, num_workers=config.data.num_workers,
                            pin_memory=device.type == "cuda",
                            generator=epoch_generator(config.train.seed, epoch))
        for batch in loader:
            started = time.perf_counter()
            for param_group in optimizer.param_groups:
                param_group["lr"] = learning_rate(step, plan.total_steps, config)
            batch = task.to_device(batch, device)
            with autocast:
                loss, batch_psnr = task.training_loss(step_model, batch, epoch)
            if not all_finite(loss.detach(), group):
                bar.close()
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at step {step + 1} (epoch {epoch}); training "
                    f"stopped and {kept_checkpoint()}. Try a lower train.lr or set train.grad_clip."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            optimizer.step()
            step += 1
            elapsed += time.perf_counter() - started
            running_psnr = batch_psnr if running_psnr is None else 0.9 * running_psnr + 0.1 * batch_psnr
            bar.update(1)
            estimate = clock.update(step, elapsed) if progress else None
            if estimate:
                bar.write(estimate)
            bar.set_postfix(psnr=f"{running_psnr:.2f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
            if step % config.train.log_every == 0 or step == plan.total_steps:
                last_metrics = {"step": step, "epoch": epoch, "images_seen": step * config.train.batch_size,
                                "loss": loss.item(), "train_psnr": batch_psnr,
                                "lr": optimizer.param_groups[0]["lr"], "train_seconds": round(elapsed, 3)}
                log.write(last_metrics)
            if (main and config.train.eval_every and step % config.train.eval_every == 0
                    and step < plan.total_steps):
                scores = evaluate_split(task, model, test_set, device, config.train.eval_images,
                                        config.train.batch_size)
                model.train()
                log.write({"step": step, "split": "test", "psnr": scores["psnr_mean"],
                           "train_seconds": round(elapsed, 3)})
                bar.write(f"step {step}: held-out PSNR {scores['psnr_mean']:.2f} dB")
            if probing and (step % config.train.probe_every == 0 or step == plan.total_steps):
                probe()
            if step % config.train.checkpoint_every == 0 or step == plan.total_steps:
                save(epoch, last_metrics)
            if step >= plan.total_steps:
                break
    bar.close()
    if not evaluate_at_end or not main:
        return {"step": step, "train_seconds": elapsed}
    results = evaluate_run_end(task, model, train_set, test_set, device, config, run_dir,
                               train_seconds=elapsed, steps=step, progress=progress)
    log.write({"step": step, "split": "test", "psnr": results["test_psnr_mean"],
               "train_seconds": round(elapsed, 3)})
    return results

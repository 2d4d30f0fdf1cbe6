"""Building an INR, per image: one Trans-INR forward pass against Learned Init's K steps.

For batches of 1 and 32 random images it times, with weights at their random
initialisation (timing does not depend on training):

* Trans-INR: one forward pass of the meta-learner (emoji32);
* Learned Init: K SGD steps on the image's pixels from θ_0 (emoji32_learned_init),
  at the config's test_inner_steps and over a sweep of K;
* fitting from scratch: one Adam step of a randomly initialised hyponet
  (transinr.fit.fit_from_scratch) — it takes hundreds of them to fit an image.

Every row gives ms per batch and per image, the ratio to Trans-INR at the same
batch size, GFLOP per image and the peak working memory. Building is inference:
Trans-INR runs under no_grad; Learned Init and fitting take their inner gradients
as they do at test time.

    python benchmarks/inr_build.py
    python benchmarks/inr_build.py --batches 1,32 --k-sweep 1,2,5,10 --device cuda train.amp=bf16

``--to-psnr`` asks the question a user asks instead: how long, per image, until the INR
reaches a given held-out PSNR? For a sweep of targets and trained models (default the
shipped ``emoji32`` and ``emoji32_learned_init``) on the first ``--images`` images of the
held-out split, each method builds INRs as it does at test time and goes on where it can:

* Trans-INR: its one forward pass; then Adam steps on the weights it generated
  (``--tune-steps``, ``--tune-lr``), the pass's time included;
* Learned Init: its SGD steps with its learned step sizes, past the K it was trained for
  (``--learned-init-steps``);
* fitting from scratch: Adam from a random init of the same hyponet (``--scratch-steps``,
  ``--scratch-lr``).

The trajectories and the time to reach a target are ``transinr.compare``'s (the whole
batch at once, its time divided by the batch size; scoring PSNR along the way is not
timed); fitting is ``transinr.fit.fit_from_scratch``. A target most images never reach
within the budget shows as ``—``.

    python benchmarks/inr_build.py --to-psnr 16,18,20,22,24,26,28,30
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch

from common import (PeakMemory, add_common_arguments, autocast_for, count_gflop, matmul_peak_gflops,
                    precision_line, runtime_description, seconds_per_call)
from transinr.compare import (feedforward_trajectory, format_seconds, learned_init_trajectory, lower_median,
                              scratch_trajectory, time_to_reach)
from transinr.config import ConfigError, load_config
from transinr.data import build_dataset
from transinr.fit import fit_from_scratch
from transinr.models import build_model
from transinr.models.learned_init import LearnedInit
from transinr.runtime import resolve_device
from transinr.trained import load_trained

DEFAULT_TRANS_INR = "emoji32"
DEFAULT_LEARNED_INIT = "emoji32_learned_init"


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def image_config(name_or_path: str, overrides: list[str], model_name: str):
    config = load_config(name_or_path, overrides)
    if config.task != "image" or config.model.name != model_name:
        raise ConfigError(f"config {name_or_path}: expected an image config of model {model_name!r}, "
                          f"got task {config.task!r}, model {config.model.name!r}")
    return config


def timed_row(method: str, batch: int, fn: Callable[[], object], steps: int, warmup: int,
              device: torch.device, compiled: bool = False) -> dict:
    """Time ``fn`` (one build of ``batch`` INRs); FLOPs from a separate counted call."""
    # A compiled module hides its ops from the counter; count the plain call where there is one.
    gflop = count_gflop(fn) if not compiled else float("nan")
    memory = PeakMemory(device)
    with memory.track():
        seconds = seconds_per_call(fn, steps, warmup, device)
    return {"method": method, "batch": batch, "seconds": seconds, "gflop_per_image": gflop / batch,
            "peak_memory_mib": memory.peak_mib, "memory_kind": memory.kind}


def fit_row(hyponet, images: torch.Tensor, steps: int, warmup: int, device: torch.device, autocast) -> dict:
    """One Adam step of fitting from scratch; fit_from_scratch's own clock leaves its PSNR scoring out."""
    batch = images.shape[0]

    def fit(n_steps: int) -> dict:
        with autocast:
            return fit_from_scratch(hyponet, images, n_steps, record_every=max(1, n_steps))

    # Both calls score PSNR twice (at step 0 and at the end): the difference is one Adam step.
    gflop = count_gflop(lambda: fit(2)) - count_gflop(lambda: fit(1))
    if warmup:
        fit(warmup)
    memory = PeakMemory(device)
    with memory.track():
        seconds = fit(steps)["seconds"][-1] / steps
    return {"method": "fit from scratch, 1 Adam step", "batch": batch, "seconds": seconds,
            "gflop_per_image": gflop / batch, "peak_memory_mib": memory.peak_mib, "memory_kind": memory.kind}


def measure(trans_inr_config, learned_init_config, batches: list[int], k_values: list[int],
            steps: int, warmup: int, device: torch.device) -> list[dict]:
    size = int(trans_inr_config.data.resolution)
    if int(learned_init_config.data.resolution) != size:
        raise ConfigError(f"the two configs disagree on data.resolution: {trans_inr_config.name} has {size}, "
                          f"{learned_init_config.name} has {learned_init_config.data.resolution}")
    trans_inr = build_model(trans_inr_config, size).to(device).eval()
    learned_init = build_model(learned_init_config, size).to(device).eval()
    trans_inr_call = torch.compile(trans_inr) if trans_inr_config.train.compile else trans_inr
    learned_init_call = torch.compile(learned_init) if learned_init_config.train.compile else learned_init
    autocast = autocast_for(trans_inr_config, device)
    test_k = learned_init.test_inner_steps
    rows = []
    for batch in batches:
        images = torch.rand(batch, 3, size, size, device=device)

        def build_trans_inr(images=images):
            with torch.no_grad(), autocast:
                return trans_inr_call(images)

        rows.append(timed_row("Trans-INR, 1 forward pass", batch, build_trans_inr, steps, warmup, device,
                              trans_inr_config.train.compile))
        for k in sorted(set(k_values) | {test_k}):
            def build_learned_init(images=images, k=k):
                with torch.no_grad(), autocast:
                    return learned_init_call(images, steps=k)

            label = f"Learned Init, K={k}" + (" (test)" if k == test_k else "")
            rows.append(timed_row(label, batch, build_learned_init, steps, warmup, device,
                                  learned_init_config.train.compile))
        rows.append(fit_row(trans_inr.hyponet, images, steps, warmup, device, autocast))
    return rows


def report(rows: list[dict]) -> None:
    reference = {row["batch"]: row["seconds"] for row in rows if row["method"].startswith("Trans-INR")}
    header = (f"{'method':<32} {'batch':>5} {'ms/batch':>10} {'ms/image':>10} {'× Trans-INR':>12} "
              f"{'GFLOP/image':>12} {'peak MiB':>9}")
    print(header)
    print("-" * len(header))
    for row in rows:
        ms = row["seconds"] * 1e3
        ratio = row["seconds"] / reference[row["batch"]]
        row["ratio_to_trans_inr"] = ratio
        print(f"{row['method']:<32} {row['batch']:>5} {ms:>10.2f} {ms / row['batch']:>10.3f} {ratio:>12.2f} "
              f"{row['gflop_per_image']:>12.4f} {row['peak_memory_mib']:>9.1f}")
    print(f"peak MiB: working memory above the level before the row ({rows[0]['memory_kind']})")


# -- time to reach a held-out PSNR (trained models) -----------------------------------


def psnr_list(text: str) -> list[float]:
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated PSNR targets in dB, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one PSNR target, got {text!r}")
    return values


def trained_pair(trans_inr_source: str, learned_init_source: str, device: torch.device):
    """The two trained models, checked to be what their role needs and to share the data."""
    trans_inr, learned_init = load_trained(trans_inr_source, device), load_trained(learned_init_source, device)
    if trans_inr.config.task != "image" or not hasattr(trans_inr.model, "weight_tokens"):
        raise ConfigError(f"--trans-inr {trans_inr_source}: expected a trained image Trans-INR, got a "
                          f"{trans_inr.config.task!r} {trans_inr.config.model.name!r} model")
    if not isinstance(learned_init.model, LearnedInit):
        raise ConfigError(f"--learned-init {learned_init_source}: expected a trained Learned Init model, got "
                          f"{learned_init.config.model.name!r}")
    data = (trans_inr.config.data.name, trans_inr.image_size)
    if (learned_init.config.data.name, learned_init.image_size) != data:
        raise ConfigError(f"the two models were trained on different data: {trans_inr_source} on "
                          f"{data[0]} at {data[1]} px, {learned_init_source} on {learned_init.config.data.name} "
                          f"at {learned_init.image_size} px")
    return trans_inr, learned_init


def held_out_images(config, count: int, device: torch.device) -> torch.Tensor:
    """The first ``count`` images of ``config``'s held-out split, (count, 3, H, W)."""
    test_set = build_dataset(config, "test")
    return torch.stack([test_set[i] for i in range(min(count, len(test_set)))]).to(device)


def tuned_trajectory(model, images: torch.Tensor, one_pass: dict, steps: int, lr: float,
                     record_every: int) -> dict:
    """Trans-INR's forward pass (``one_pass``, its trajectory), then Adam steps on the weights
    it generated. Step 0 is the pass itself; every time includes the pass's."""
    with torch.no_grad():
        generated = model(images)
    fitted = fit_from_scratch(model.hyponet, images, steps, lr, record_every, initial_weights=generated)
    offset = one_pass["seconds"][0]
    return {"steps": fitted["steps"], "seconds": [offset + s for s in fitted["seconds"]], "psnr": fitted["psnr"],
            "procedure": f"1 forward pass, then {steps} Adam steps (lr {lr:g}) on its weights"}


def quality_trajectories(trans_inr, learned_init, images: torch.Tensor, args) -> dict[str, dict]:
    """PSNR against test-time wall time of every method, on the same images."""
    one_pass = feedforward_trajectory(trans_inr, images)
    return {
        "Trans-INR, 1 forward pass": one_pass,
        "Trans-INR + Adam on its weights": tuned_trajectory(trans_inr, images, one_pass, args.tune_steps,
                                                            args.tune_lr, args.record_every),
        "Learned Init, its SGD steps": learned_init_trajectory(learned_init, images, args.learned_init_steps),
        "fit from scratch, Adam": scratch_trajectory(trans_inr.hyponet, images, args.scratch_steps, args.scratch_lr,
                                                     args.record_every),
    }


def time_to_psnr_rows(trajectories: dict[str, dict], targets: list[float]) -> list[dict]:
    """Per method: for every target, the median time per image to reach it (inf when most
    images never do), the median step count and how many images reach it."""
    rows = []
    for method, trajectory in trajectories.items():
        psnr = torch.tensor(trajectory["psnr"])  # (records, images)
        cells = []
        for target in targets:
            seconds, steps = time_to_reach(trajectory, torch.full((psnr.shape[1],), float(target)))
            cells.append({"target_db": target, "seconds_per_image": lower_median(seconds),
                          "steps": lower_median(steps), "images_reaching": int(torch.isfinite(seconds).sum())})
        rows.append({"method": method, "procedure": trajectory["procedure"], "images": psnr.shape[1],
                     "psnr_at_end": psnr[-1].mean().item(), "best_psnr": psnr.mean(dim=1).max().item(),
                     "seconds_per_image_spent": trajectory["seconds"][-1] / psnr.shape[1], "cells": cells})
    return rows


def time_cell(cell: dict) -> str:
    seconds = cell["seconds_per_image"]
    return format_seconds(seconds) if math.isfinite(seconds) else "—"


def steps_cell(cell: dict) -> str:
    steps = f"{cell['steps']:.0f}" if math.isfinite(cell["steps"]) else "—"
    return f"{steps} ({cell['images_reaching']})"


def report_time_to_psnr(rows: list[dict], targets: list[float]) -> None:
    images, width = rows[0]["images"], 12
    head = f"{'method':<34}{'PSNR at end':>12}" + "".join(f"{f'{t:g} dB':>{width}}" for t in targets)
    print(f"\nmedian time per image to reach the target ({images} held-out images; —: most never reach it)")
    print(head)
    print("-" * len(head))
    for row in rows:
        cells = "".join(f"{time_cell(cell):>{width}}" for cell in row["cells"])
        print(f"{row['method']:<34}{row['psnr_at_end']:>12.2f}{cells}")
    print(f"\nmedian steps to the target (images of {images} reaching it)")
    for row in rows:
        print(f"{row['method']:<46}" + "".join(f"{steps_cell(cell):>{width}}" for cell in row["cells"]))
    print("\nfastest to each target:")
    for index, target in enumerate(targets):
        times = {row["method"]: row["cells"][index]["seconds_per_image"] for row in rows}
        best = min(times, key=times.get)
        print(f"  {target:g} dB: {best if math.isfinite(times[best]) else 'none within the budget'}")
    print("procedures (time per image spent in all):")
    for row in rows:
        print(f"  {row['method']}: {row['procedure']} ({format_seconds(row['seconds_per_image_spent'])})")


def measure_time_to_psnr(args, device: torch.device) -> list[dict]:
    trans_inr, learned_init = trained_pair(args.trans_inr, args.learned_init, device)
    images = held_out_images(trans_inr.config, args.images, device)
    print(f"Trans-INR: {trans_inr.source} ({trans_inr.name})   Learned Init: {learned_init.source} "
          f"({learned_init.name})   {images.shape[0]} held-out {trans_inr.config.data.name} images of "
          f"{trans_inr.image_size} px")
    rows = time_to_psnr_rows(quality_trajectories(trans_inr.model, learned_init.model, images, args), args.to_psnr)
    report_time_to_psnr(rows, args.to_psnr)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="dotted overrides for both configs, e.g. train.amp=bf16")
    parser.add_argument("--trans-inr", default=DEFAULT_TRANS_INR,
                        help="Trans-INR config (timing table) or trained model (--to-psnr)")
    parser.add_argument("--learned-init", default=DEFAULT_LEARNED_INIT,
                        help="Learned Init config (timing table) or trained model (--to-psnr)")
    parser.add_argument("--batches", type=int_list, default=[1, 32], help="batch sizes, e.g. 1,32")
    parser.add_argument("--k-sweep", type=int_list, default=[1, 2, 5, 10],
                        help="Learned Init step counts besides the config's test_inner_steps")
    quality = parser.add_argument_group("time to reach a held-out PSNR (trained models)")
    quality.add_argument("--to-psnr", type=psnr_list, default=None, metavar="DB,DB,…",
                         help="targets in dB: measure the time per image to reach each instead")
    quality.add_argument("--images", type=int, default=32, help="held-out images (the first of the test split)")
    quality.add_argument("--tune-steps", type=int, default=500, help="Adam steps on Trans-INR's weights")
    quality.add_argument("--tune-lr", type=float, default=1e-3, help="their Adam learning rate")
    quality.add_argument("--learned-init-steps", type=int, default=100, help="Learned Init's SGD steps")
    quality.add_argument("--scratch-steps", type=int, default=1000, help="Adam steps of fitting from scratch")
    quality.add_argument("--scratch-lr", type=float, default=1e-3, help="their Adam learning rate")
    quality.add_argument("--record-every", type=int, default=1, help="Adam steps between PSNR records")
    add_common_arguments(parser, steps=20, warmup=3)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    print(runtime_description(device))
    if args.to_psnr is not None:
        if args.overrides:
            parser.error("config overrides apply to the timing table, not to --to-psnr (trained models)")
        return measure_time_to_psnr(args, device)
    trans_inr_config = image_config(args.trans_inr, args.overrides, "trans_inr")
    learned_init_config = image_config(args.learned_init, args.overrides, "learned_init")
    peak = matmul_peak_gflops(device, args.peak_size)
    print(f"fp32 matmul peak ({args.peak_size}²): {peak:.1f} GFLOP/s")
    print(precision_line(trans_inr_config, device))
    print(f"Trans-INR: {trans_inr_config.name}   Learned Init: {learned_init_config.name}   "
          f"{trans_inr_config.data.resolution} px images, random weights")
    rows = measure(trans_inr_config, learned_init_config, args.batches, args.k_sweep, args.steps, args.warmup,
                   device)
    report(rows)
    return rows


if __name__ == "__main__":
    main()

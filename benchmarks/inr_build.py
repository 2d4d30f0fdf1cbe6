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
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from common import (PeakMemory, add_common_arguments, autocast_for, count_gflop, matmul_peak_gflops,
                    precision_line, runtime_description, seconds_per_call)
from transinr.config import ConfigError, load_config
from transinr.fit import fit_from_scratch
from transinr.models import build_model
from transinr.runtime import resolve_device

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


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="dotted overrides for both configs, e.g. train.amp=bf16")
    parser.add_argument("--trans-inr", default=DEFAULT_TRANS_INR, help="Trans-INR config name or YAML path")
    parser.add_argument("--learned-init", default=DEFAULT_LEARNED_INIT, help="Learned Init config name or YAML path")
    parser.add_argument("--batches", type=int_list, default=[1, 32], help="batch sizes, e.g. 1,32")
    parser.add_argument("--k-sweep", type=int_list, default=[1, 2, 5, 10],
                        help="Learned Init step counts besides the config's test_inner_steps")
    add_common_arguments(parser, steps=20, warmup=3)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    trans_inr_config = image_config(args.trans_inr, args.overrides, "trans_inr")
    learned_init_config = image_config(args.learned_init, args.overrides, "learned_init")
    print(runtime_description(device))
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

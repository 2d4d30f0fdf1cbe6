"""Training-step throughput against this machine's own matmul limit.

Prints images/s, GFLOP per step (counted by torch.utils.flop_counter, attention
included), achieved GFLOP/s, the fp32 matmul peak measured in the same run, and
the ratio of the two. The data are random tensors already in memory, so the
figure is the model's step alone.

    python benchmarks/train_throughput.py                 # emoji32_bench, batch 32
    python benchmarks/train_throughput.py celeba178 --steps 3

For the same step beside the official implementation's, measured in one run, see
benchmarks/against_official.py.
"""

from __future__ import annotations

import argparse
import resource

import torch

from common import count_gflop, matmul_peak_gflops, seconds_per_call, training_step_closures
from transinr.config import load_config
from transinr.models import build_model
from transinr.runtime import resolve_device
from transinr.tasks import build_task


def synthetic_batch(config, batch_size: int, device):
    size = int(config.data.resolution)
    return torch.rand(batch_size, 3, size, size, device=device)


def measure(config_name: str, overrides: list[str], batch_size: int | None, steps: int, warmup: int,
            device_name: str) -> dict:
    device = resolve_device(device_name)
    config = load_config(config_name, overrides)
    batch_size = batch_size or config.train.batch_size
    task = build_task(config)
    model = build_model(config, int(config.data.resolution)).to(device)
    images = synthetic_batch(config, batch_size, device)
    step, forward_backward = training_step_closures(config, task, model, images, device)

    gflop_per_step = count_gflop(forward_backward)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = seconds_per_call(step, steps, warmup, device)
    peak_memory = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
                   else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"config": config.name, "device": str(device), "batch": batch_size,
            "images_per_s": batch_size / seconds, "seconds_per_step": seconds,
            "gflop_per_step": gflop_per_step, "gflops": gflop_per_step / seconds,
            "parameters": sum(p.numel() for p in model.parameters()), "peak_memory_mib": peak_memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="emoji32_bench")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    peak = matmul_peak_gflops(device)
    result = measure(args.config, args.overrides, args.batch, args.steps, args.warmup, args.device)
    print(f"device: {result['device']}  torch threads: {torch.get_num_threads()}  torch {torch.__version__}")
    print(f"fp32 matmul peak (4096²): {peak:.1f} GFLOP/s")
    print(f"config {result['config']}  batch {result['batch']}  parameters {result['parameters'] / 1e6:.2f} M")
    print(f"  {result['images_per_s']:.1f} images/s  ({result['seconds_per_step'] * 1e3:.0f} ms/step)")
    print(f"  {result['gflop_per_step']:.1f} GFLOP/step  →  {result['gflops']:.1f} GFLOP/s "
          f"= {100 * result['gflops'] / peak:.0f}% of the matmul peak")
    print(f"  peak memory: {result['peak_memory_mib']:.0f} MiB "
          f"({'CUDA allocated' if device.type == 'cuda' else 'process max RSS'})")


if __name__ == "__main__":
    main()

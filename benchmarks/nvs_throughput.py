"""Novel view synthesis: training and rendering rays/s against this machine's matmul limit.

Two phases, each with its GFLOP (torch.utils.flop_counter, attention included),
achieved GFLOP/s, the share of the fp32 matmul peak measured in the same run, and
peak memory:

* training: forward + backward + Adam on random posed-view batches shaped like the
  dataset's (support rgb (B, V, 3, H, W) with their rays, query rays (B, R, 3)),
  as rays/s and points/s (rays × samples per ray);
* rendering one full view (H × W rays × n_samples points) from generated weights,
  under no_grad, as rays/s and ms per view.

The batches are random tensors already in memory, so the figures are the model's
alone. Each phase's FLOP-counting pass runs first and also warms it up.

    python benchmarks/nvs_throughput.py                              # shapes3d_chairs_1view
    python benchmarks/nvs_throughput.py shapenet_chairs_1view --steps 3 --warmup 1
    python benchmarks/nvs_throughput.py shapenet_chairs_1view train.amp=bf16 --device cuda
"""

from __future__ import annotations

import argparse
import math

import torch

from common import (PeakMemory, add_common_arguments, autocast_for, count_gflop, matmul_peak_gflops,
                    precision_line, runtime_description, seconds_per_call, training_step_closures)
from transinr.config import ConfigError, load_config
from transinr.models import build_model
from transinr.render import get_rays, pose_spherical
from transinr.runtime import resolve_device
from transinr.tasks import build_task
from transinr.tasks.nvs import render_novel_view

DEFAULT_CONFIG = "shapes3d_chairs_1view"
# Field of view of the learnit renders and of the kit's own mesh renders (Blender's default lens).
CAMERA_ANGLE_X = 0.6911112070083618


def view_resolution(config) -> int:
    try:
        return int(config.data.resolution)
    except (TypeError, ValueError):
        raise ConfigError(f"config {config.name}: data.resolution is {config.data.resolution!r}; the "
                          f"benchmark needs a view size in pixels, e.g. data.resolution=128") from None


def random_cameras(batch: int, size: int, radius: float, generator: torch.Generator):
    """(batch, 4, 4) poses on a sphere looking at the origin, and the learnit focal length."""
    azimuth = torch.rand(batch, generator=generator) * 360.0
    elevation = torch.rand(batch, generator=generator) * 60.0 - 10.0
    poses = pose_spherical(azimuth, elevation, torch.full((batch,), radius))
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    return poses, focal


def synthetic_view_batch(config, batch: int, device: torch.device, seed: int = 0) -> dict:
    """A training batch shaped like :class:`transinr.data.views.PosedViews` gives, random content.

    support_rgb (B, V, 3, H, W), support_rays_o / _d (B, V, H, W, 3), query_rgb and
    query_rays_o / _d (B, R, 3) for R = nvs.train_rays pixels of one other view each,
    support_poses (B, V, 4, 4), focal / near / far (B,). Rays are real camera rays, so
    the sample points lie where the dataset's would.
    """
    generator = torch.Generator().manual_seed(seed)
    size, n_views, n_rays = view_resolution(config), config.data.n_support, config.nvs.train_rays
    radius = 0.5 * (config.nvs.near + config.nvs.far)
    poses, focal = random_cameras(batch * (n_views + 1), size, radius, generator)
    origins, directions = get_rays(poses, focal, size, size)  # (B·(V+1), H, W, 3)
    origins = origins.reshape(batch, n_views + 1, size, size, 3)
    directions = directions.reshape(batch, n_views + 1, size, size, 3)
    pixels = torch.stack([torch.randperm(size * size, generator=generator)[:n_rays] for _ in range(batch)])
    pick = pixels[..., None].expand(batch, n_rays, 3)  # (B, R, 3)
    values = {
        "support_rgb": torch.rand(batch, n_views, 3, size, size, generator=generator),
        "support_rays_o": origins[:, :n_views],
        "support_rays_d": directions[:, :n_views],
        "support_poses": poses.reshape(batch, n_views + 1, 4, 4)[:, :n_views],
        "query_rgb": torch.rand(batch, n_rays, 3, generator=generator),
        "query_rays_o": torch.gather(origins[:, n_views].reshape(batch, -1, 3), 1, pick),
        "query_rays_d": torch.gather(directions[:, n_views].reshape(batch, -1, 3), 1, pick),
        "focal": torch.full((batch,), focal),
        "near": torch.full((batch,), config.nvs.near),
        "far": torch.full((batch,), config.nvs.far),
    }
    return {key: value.contiguous().to(device) for key, value in values.items()}


def measure_training(config, task, model, batch: dict, steps: int, warmup: int, device, memory: PeakMemory) -> dict:
    step, forward_backward = training_step_closures(config, task, model, batch, device)
    gflop = count_gflop(forward_backward)
    with memory.track():
        seconds = seconds_per_call(step, steps, warmup, device)
    rays = batch["query_rays_o"].shape[0] * batch["query_rays_o"].shape[1]
    return {"seconds": seconds, "gflop": gflop, "rays": rays, "points": rays * config.nvs.n_samples,
            "peak_memory_mib": memory.peak_mib}


def measure_rendering(config, model, batch: dict, size: int, steps: int, warmup: int, device,
                      memory: PeakMemory) -> dict:
    """One object, one full (size × size) view from its generated weights; weights generated untimed."""
    autocast = autocast_for(config, device)
    model.eval()
    with torch.no_grad(), autocast:
        weights = model(batch["support_rgb"][:1], batch["support_rays_o"][:1], batch["support_rays_d"][:1])
    poses, focal = random_cameras(1, size, 0.5 * (config.nvs.near + config.nvs.far), torch.Generator().manual_seed(1))
    poses = poses.to(device)

    def render() -> torch.Tensor:
        with autocast:
            return render_novel_view(model, weights, poses, focal, size, size, config.nvs.near, config.nvs.far,
                                     config.nvs.n_samples, config.nvs.render_chunk)

    gflop = count_gflop(render)
    with memory.track():
        seconds = seconds_per_call(render, steps, warmup, device)
    rays = size * size
    return {"seconds": seconds, "gflop": gflop, "rays": rays, "points": rays * config.nvs.n_samples,
            "peak_memory_mib": memory.peak_mib}


def nvs_config(name_or_path: str, overrides: list[str]):
    config = load_config(name_or_path, overrides)
    if config.task != "nvs":
        raise ConfigError(f"config {name_or_path}: a {config.task!r} task; nvs_throughput needs an nvs config "
                          f"(e.g. {DEFAULT_CONFIG}); for images use benchmarks/train_throughput.py")
    view_resolution(config)
    return config


def measure(config, batch_size: int | None, render_size: int | None, steps: int, warmup: int,
            device: torch.device) -> dict:
    """Training and rendering figures of ``config`` (see the module docstring)."""
    batch_size = batch_size or config.train.batch_size
    size = view_resolution(config)
    memory = PeakMemory(device)  # before the model: its weights and Adam state count
    task = build_task(config)
    model = build_model(config, size).to(device)
    batch = synthetic_view_batch(config, batch_size, device, seed=config.train.seed)
    training = measure_training(config, task, model, batch, steps, warmup, device, memory)
    rendering = measure_rendering(config, model, batch, render_size or size, steps, warmup, device,
                                  PeakMemory(device))
    return {"config": config, "batch": batch_size, "size": size, "render_size": render_size or size,
            "parameters": sum(p.numel() for p in model.parameters()), "memory_kind": memory.kind,
            "training": training, "rendering": rendering}


def report(result: dict, peak_gflops: float, bf16_peak_gflops: float | None = None) -> None:
    config, nvs = result["config"], result["config"].nvs
    training, rendering = result["training"], result["rendering"]
    print(f"config {config.name}  batch {result['batch']} objects × {config.data.n_support} view(s) of "
          f"{result['size']} px  parameters {result['parameters'] / 1e6:.2f} M")
    print(f"  {nvs.train_rays} query rays per object × {nvs.n_samples} points per ray")
    for name, phase, unit in (("training", training, "step"), ("rendering", rendering, "view")):
        gflops = phase["gflop"] / phase["seconds"]
        print(f"{name}:")
        if name == "rendering":
            print(f"  one {result['render_size']}×{result['render_size']} view = {phase['rays']} rays × "
                  f"{nvs.n_samples} points, chunk {nvs.render_chunk} rays, no_grad")
        print(f"  {phase['rays'] / phase['seconds']:,.0f} rays/s  {phase['points'] / phase['seconds']:,.0f} points/s"
              f"  ({phase['seconds'] * 1e3:.1f} ms/{unit})")
        bf16_share = (f", {100 * gflops / bf16_peak_gflops:.0f}% of the bf16 one"
                      if bf16_peak_gflops else "")
        print(f"  {phase['gflop']:.2f} GFLOP/{unit}  →  {gflops:.1f} GFLOP/s "
              f"= {100 * gflops / peak_gflops:.0f}% of the fp32 matmul peak{bf16_share}")
        print(f"  peak memory: {phase['peak_memory_mib']:.0f} MiB ({result['memory_kind']}"
              f"{', above the level before the model was built' if name == 'training' else ', working memory'})")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="an nvs config name or YAML path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.amp=bf16")
    parser.add_argument("--batch", type=int, default=None, help="objects per training step (default: the config's)")
    parser.add_argument("--render-size", type=int, default=None, help="rendered view size (default: the data's)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    config = nvs_config(args.config, args.overrides)
    print(runtime_description(device))
    peak = matmul_peak_gflops(device, args.peak_size)
    print(f"fp32 matmul peak ({args.peak_size}²): {peak:.1f} GFLOP/s")
    bf16_peak = None
    if config.train.amp == "bf16" and device.type == "cuda":  # autocast runs the matmuls in bf16
        bf16_peak = matmul_peak_gflops(device, args.peak_size, dtype=torch.bfloat16)
        print(f"bf16 matmul peak ({args.peak_size}²): {bf16_peak:.1f} GFLOP/s")
    print(precision_line(config, device))
    result = measure(config, args.batch, args.render_size, args.steps, args.warmup, device)
    report(result, peak, bf16_peak)
    result["matmul_peak_gflops"] = peak
    return result


if __name__ == "__main__":
    main()

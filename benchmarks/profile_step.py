"""Where a training step's time goes: forward, backward and optimiser; matmul, elementwise work,
memory traffic; the ops that take the most.

    python benchmarks/profile_step.py                                   # emoji32_bench, batch 32
    python benchmarks/profile_step.py shapenet_chairs_1view --batch 2   # the NVS training step
    python benchmarks/profile_step.py shapenet_chairs_1view --render 64 # rendering one 64 px view

The step is the one the other benchmarks time (``common.training_step_closures``: forward,
``zero_grad``, backward, Adam) on random data already in memory. It runs ``--warmup`` times,
then ``--steps`` times on the clock alone (the step time without the profiler), then
``--steps`` times under ``torch.profiler``. Every profiled op's *self* time (the time spent
in it, not in the ops it calls) is put in

* a phase: forward, backward or optimiser, by the labelled span it runs in;
* a kind: ``matmul`` (mm, bmm, addmm, baddbmm, the attention kernel), ``elementwise``
  (activations, norms, softmax, reductions, arithmetic), ``memory`` (copies, cat, indexing,
  fills and allocation: moving bytes without arithmetic), ``optimiser`` (Adam's kernels) or
  ``framework`` (autograd's and the dispatcher's own bookkeeping between ops).

It also prints the rate of the matmul-kind ops alone (their FLOPs from the recorded shapes,
as ``common.count_gflop`` counts them, over their time) against the fp32 matmul peak measured
before and after (the higher), and the matmuls by shape with the rate of each.

The profiler adds a few microseconds to every op, so the profiled total is a little above
the plain step time; shares are of the profiled total.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from common import (DEFAULT_PEAK_SIZE, PHASE_LABELS, matmul_peak_gflops, runtime_description, seconds_per_call,
                    training_step_closures)
from nvs_throughput import random_cameras, synthetic_view_batch
from train_throughput import synthetic_batch
from transinr.config import load_config
from transinr.models import build_model
from transinr.runtime import resolve_device
from transinr.tasks import build_task
from transinr.tasks.nvs import render_novel_view

DEFAULT_CONFIG = "emoji32_bench"
RENDER_LABEL = "render"

MATMUL_OPS = {"mm", "bmm", "addmm", "baddbmm", "addbmm", "dot", "mv", "addmv",
              "_scaled_dot_product_flash_attention_for_cpu",
              "_scaled_dot_product_flash_attention_for_cpu_backward"}
MEMORY_OPS = {"copy_", "cat", "clone", "contiguous", "index", "index_select", "index_put_", "_index_put_impl_",
              "gather", "scatter", "scatter_add_", "repeat", "repeat_interleave", "fill_", "zero_", "zeros",
              "zeros_like", "ones", "ones_like", "full", "empty", "empty_like", "empty_strided", "_to_copy",
              "to", "new_zeros", "new_empty", "new_empty_strided", "slice_backward", "select_backward",
              "stack", "narrow_copy", "as_strided_scatter", "_unsafe_view", "resize_", "set_"}
OPTIMISER_PREFIXES = ("_fused_adam", "_foreach_", "adam")
KINDS = ("matmul", "elementwise", "memory", "optimiser", "framework")


def op_kind(name: str) -> str:
    """The kind of a profiled event by its name (``aten::mm`` → ``matmul``)."""
    if not name.startswith("aten::"):
        return "framework"  # autograd nodes, record_function spans, Python-side ops
    op = name[len("aten::"):]
    if op in MATMUL_OPS:
        return "matmul"
    if op.startswith(OPTIMISER_PREFIXES):
        return "optimiser"
    if op in MEMORY_OPS:
        return "memory"
    return "elementwise"


def phase_spans(events) -> list[tuple[float, float, str]]:
    """(start µs, end µs, phase) of every labelled span, from the profiler's events."""
    labels = set(PHASE_LABELS.values()) | {RENDER_LABEL}
    return [(e.time_range.start, e.time_range.end, e.name) for e in events if e.name in labels]


def matmul_flop(name: str, shapes: list) -> int:
    """FLOPs of one matmul-kind op from its recorded input shapes (0 where they are unknown)."""
    op = name[len("aten::"):]
    tensors = [shape for shape in shapes if shape]
    try:
        if op in ("mm", "bmm", "addmm", "baddbmm"):
            a, b = tensors[-2:] if op in ("addmm", "baddbmm") else tensors[:2]
            batch = a[0] if len(a) == 3 else 1
            return 2 * batch * a[-2] * a[-1] * b[-1]
        if op.startswith("_scaled_dot_product_flash_attention_for_cpu"):
            backward = op.endswith("backward")
            query, key = tensors[1:3] if backward else tensors[:2]  # backward: grad_out first
            b, h, n, d = query
            return 2 * b * h * n * key[-2] * d * (4 if backward else 2)  # as common.count_gflop
    except (IndexError, ValueError):
        pass
    return 0


def shape_text(shapes: list) -> str:
    return " ".join("×".join(map(str, shape)) for shape in shapes if shape)


def breakdown(events, steps: int) -> dict:
    """Per-step self time (ms) by phase × kind, by op, and by matmul shape, from a profiler's
    ``events()`` (recorded with ``record_shapes``)."""
    spans = phase_spans(events)
    labels = set(PHASE_LABELS.values()) | {RENDER_LABEL}
    by_phase_kind: dict[tuple[str, str], float] = defaultdict(float)
    by_op: dict[str, list] = defaultdict(lambda: [0.0, 0])
    by_matmul: dict[tuple[str, str, str], list] = defaultdict(lambda: [0.0, 0, 0])
    for event in events:
        if event.name in labels:
            continue
        start = event.time_range.start
        phase = next((name for lo, hi, name in spans if lo <= start <= hi), "other")
        ms = event.self_cpu_time_total / 1e3 / steps
        kind = op_kind(event.name)
        by_phase_kind[phase, kind] += ms
        entry = by_op[event.name]
        entry[0] += ms
        entry[1] += 1
        if kind == "matmul":
            shapes = list(event.input_shapes or [])
            entry = by_matmul[phase, event.name, shape_text(shapes)]
            entry[0] += ms
            entry[1] += 1
            entry[2] += matmul_flop(event.name, shapes) / steps
    return {"by_phase_kind": dict(by_phase_kind),
            "by_op": {name: (ms, calls / steps) for name, (ms, calls) in by_op.items()},
            "by_matmul": {key: (ms, calls / steps, flop) for key, (ms, calls, flop) in by_matmul.items()}}


def profiled(fn, steps: int) -> dict:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        for _ in range(steps):
            fn()
    return breakdown(profiler.events(), steps)


def report(result: dict, plain_ms: float, rows: int, peak_gflops: float | None = None) -> None:
    table = result["by_phase_kind"]
    total = sum(table.values())
    matmul_ms = sum(ms for (_, _, _), (ms, _, _) in result["by_matmul"].items())
    matmul_gflop = sum(flop for (_, _, _), (_, _, flop) in result["by_matmul"].items()) / 1e9
    if matmul_ms:
        rate = matmul_gflop / matmul_ms * 1e3
        share = f" = {100 * rate / peak_gflops:.0f}% of the fp32 matmul peak" if peak_gflops else ""
        print(f"matmul-kind ops: {matmul_gflop:.1f} GFLOP per call in {matmul_ms:.1f} ms: {rate:.1f} GFLOP/s{share}")
    phases = [p for p in (*PHASE_LABELS.values(), RENDER_LABEL, "other") if any(k[0] == p for k in table)]
    print(f"step without the profiler: {plain_ms:.1f} ms; profiled (self times summed): {total:.1f} ms")
    header = f"{'phase':<12}" + "".join(f"{kind:>14}" for kind in KINDS) + f"{'total':>14}"
    print(header)
    print("-" * len(header))
    for phase in phases:
        cells = [table.get((phase, kind), 0.0) for kind in KINDS]
        print(f"{phase:<12}" + "".join(f"{ms:>8.1f} {100 * ms / total:>3.0f}%" for ms in cells)
              + f"{sum(cells):>8.1f} {100 * sum(cells) / total:>3.0f}%")
    cells = [sum(ms for (_, kind), ms in table.items() if kind == k) for k in KINDS]
    print(f"{'all':<12}" + "".join(f"{ms:>8.1f} {100 * ms / total:>3.0f}%" for ms in cells) + f"{total:>8.1f} 100%")
    print(f"\ntop {rows} ops by self time (ms per step, calls per step)")
    ranked = sorted(result["by_op"].items(), key=lambda item: -item[1][0])[:rows]
    for name, (ms, calls) in ranked:
        print(f"  {name:<58} {op_kind(name):<12} {ms:>8.1f} ms {100 * ms / total:>5.1f}%  {calls:>6.0f} calls")
    print(f"\ntop {rows} matmuls by self time, with their input shapes and achieved GFLOP/s")
    ranked = sorted(result["by_matmul"].items(), key=lambda item: -item[1][0])[:rows]
    for (phase, name, shapes), (ms, calls, flop) in ranked:
        rate = f"{flop / ms / 1e6:>6.1f}" if flop and ms else "     —"
        print(f"  {phase:<9} {name[len('aten::'):][:30]:<30} {shapes:<38} {ms:>8.1f} ms {calls:>4.0f}× {rate} GFLOP/s")


def step_function(config, batch_size: int | None, device):
    """The training step of ``config`` on a random batch (2D images or posed views)."""
    size = int(config.data.resolution)
    batch_size = batch_size or config.train.batch_size
    torch.manual_seed(config.train.seed)
    model = build_model(config, size).to(device)
    if config.task == "nvs":
        batch = synthetic_view_batch(config, batch_size, device, seed=config.train.seed)
    else:
        batch = synthetic_batch(config, batch_size, device)
    step, _ = training_step_closures(config, build_task(config), model, batch, device)
    return step, f"{config.name}, batch {batch_size}, training step"


def render_function(config, size: int, device):
    """Rendering one (size × size) view of one object from weights generated beforehand."""
    torch.manual_seed(config.train.seed)
    model = build_model(config, int(config.data.resolution)).to(device).eval()
    batch = synthetic_view_batch(config, 1, device, seed=config.train.seed)
    with torch.no_grad():
        weights = model(batch["support_rgb"], batch["support_rays_o"], batch["support_rays_d"])
    nvs = config.nvs
    pose, focal = random_cameras(1, size, 0.5 * (nvs.near + nvs.far), torch.Generator().manual_seed(1))
    pose = pose.to(device)

    def render() -> None:
        with record_function(RENDER_LABEL):
            render_novel_view(model, weights, pose, focal, size, size, nvs.near, nvs.far, nvs.n_samples,
                              nvs.render_chunk)

    return render, f"{config.name}, one {size}×{size} view ({nvs.n_samples} samples per ray)"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="a config name or YAML path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.n_groups=16")
    parser.add_argument("--batch", type=int, default=None, help="signals per step (default: the config's)")
    parser.add_argument("--render", type=int, default=None, metavar="SIZE",
                        help="profile rendering one SIZE × SIZE view instead (NVS configs)")
    parser.add_argument("--steps", type=int, default=3, help="steps timed, then steps profiled")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--rows", type=int, default=20, help="ops listed")
    parser.add_argument("--device", default="cpu", help="cpu (the profile's kinds are of CPU ops)")
    parser.add_argument("--peak-size", type=int, default=DEFAULT_PEAK_SIZE,
                        help="matrix size of the matmul-peak measurement")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    config = load_config(args.config, args.overrides)
    if args.render is not None:
        if config.task != "nvs":
            raise SystemExit(f"--render: config {config.name} is a {config.task!r} task; rendering needs an nvs one")
        fn, what = render_function(config, args.render, device)
    else:
        fn, what = step_function(config, args.batch, device)
    print(runtime_description(device))
    print(what)
    peaks = [matmul_peak_gflops(device, args.peak_size)]
    plain_ms = seconds_per_call(fn, args.steps, args.warmup, device) * 1e3
    started = time.perf_counter()
    result = profiled(fn, args.steps)
    seconds = time.perf_counter() - started
    peaks.append(matmul_peak_gflops(device, args.peak_size))
    print(f"(profiled {args.steps} calls in {seconds:.1f} s; fp32 matmul peak ({args.peak_size}²) before and "
          f"after: {peaks[0]:.1f}, {peaks[1]:.1f} GFLOP/s)\n")
    report(result, plain_ms, args.rows, max(peaks))
    result.update(plain_ms=plain_ms, matmul_peak_gflops=peaks)
    return result


if __name__ == "__main__":
    main()

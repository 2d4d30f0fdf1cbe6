"""Measuring tools shared by the benchmark scripts.

The machine's fp32 matmul peak (the limit the other figures are compared with),
FLOP counting with torch.utils.flop_counter (taught the CPU attention kernel),
timing that waits for the GPU at both edges, and peak memory of a block of code.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch.profiler import record_function
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, register_flop_formula

from transinr.runtime import autocast_for  # the benchmarks import it from here too
from transinr.train import build_optimizer

DEFAULT_PEAK_SIZE = 4096


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read means what it says."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- FLOPs ----------------------------------------------------------------------------


def register_cpu_attention_flops() -> None:
    """flop_counter knows the CUDA attention kernels but not the CPU one; count it the same way."""
    aten = torch.ops.aten
    cpu_kernel = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    cpu_backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if cpu_kernel is None:
        return

    # Formulas receive the shapes of the arguments, not the tensors.
    def forward_flops(query, key, value, *args, **kwargs) -> int:
        b, h, n, d = query
        m = key[-2]
        return 2 * b * h * n * m * d * 2  # QKᵀ and (softmax)·V

    def backward_flops(grad_out, query, key, value, *args, **kwargs) -> int:
        b, h, n, d = query
        m = key[-2]
        return 2 * b * h * n * m * d * 4  # recompute QKᵀ is not counted; dQ, dK, dV, dP

    try:
        register_flop_formula(cpu_kernel)(forward_flops)
        if cpu_backward is not None:
            register_flop_formula(cpu_backward)(backward_flops)
    except Exception:  # already registered (by an earlier call, or by a newer torch)
        pass


class _FlopCount(TorchDispatchMode):
    """Adds up flop_counter's formulas over every op dispatched inside it (backward included).

    FlopCounterMode also attributes FLOPs to modules through hooks, and those hooks
    break ``torch.autograd.grad`` (Learned Init's inner loop); the per-op sum needs none.
    """

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_gflop(fn: Callable[[], object]) -> float:
    """GFLOP of one call of ``fn``: matmuls, convolutions and attention, forward and backward.

    The same formulas as torch.utils.flop_counter.FlopCounterMode. Elementwise work
    (activations, softmax, the volume-rendering sums) is not counted, as in every FLOP
    figure of this kind; it is a small share of these models.
    """
    register_cpu_attention_flops()
    with _FlopCount() as counter:
        fn()
    return counter.total / 1e9


def matmul_peak_gflops(device: torch.device, size: int = DEFAULT_PEAK_SIZE, repeats: int = 5,
                       dtype: torch.dtype = torch.float32) -> float:
    """The best GFLOP/s of a (size × size) @ (size × size) matmul: the machine's practical limit."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up: thread pool, kernel selection
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


# -- training steps -------------------------------------------------------------------

# The spans of a training step, named for torch.profiler (profile_step.py); a label costs
# a few microseconds when no profiler runs.
PHASE_LABELS = {"forward": "forward", "backward": "backward", "optimiser": "optimiser"}


def training_step_closures(config, task, model, batch, device: torch.device):
    """``(step, forward_backward)`` over one fixed batch, as the training loop runs them.

    ``step`` is a whole optimiser step (on the compiled model when ``train.compile``);
    ``forward_backward`` runs the plain model, for FLOP counting: compiled graphs hide
    their ops from the counter.
    """
    optimizer = build_optimizer(model, config)
    step_model = torch.compile(model) if config.train.compile else model
    autocast = autocast_for(config, device)
    model.train()

    def step() -> None:
        with record_function(PHASE_LABELS["forward"]), autocast:
            loss, _ = task.training_loss(step_model, batch, 0)
        with record_function(PHASE_LABELS["backward"]):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function(PHASE_LABELS["optimiser"]):
            optimizer.step()

    def forward_backward() -> None:
        with autocast:
            loss, _ = task.training_loss(model, batch, 0)
        loss.backward()

    return step, forward_backward


# -- time -----------------------------------------------------------------------------


def seconds_per_call(fn: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Mean wall time of ``steps`` calls of ``fn`` after ``warmup`` untimed ones."""
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def alternating_seconds(fns: dict[str, Callable[[], object]], rounds: int, steps: int, warmup: int,
                        device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each of ``fns`` in each of ``rounds`` rounds, taken in turn.

    Every round times each function for ``steps`` calls; the order flips every round
    (A B, B A, …) so that a drift of the machine's speed (other work starting, clocks
    changing) falls on both alike. Warm-up calls run once, before the first round.
    """
    if rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {rounds}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            seconds[name].append(seconds_per_call(fns[name], steps, 0, device))
    return seconds


# -- memory ---------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    """A ``Vm…`` line of /proc/self/status in KiB (Linux), else None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ≥ 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _max_rss_kib() -> int:
    """ru_maxrss in KiB (Linux reports KiB, macOS bytes)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value


class PeakMemory:
    """Peak memory of tracked blocks above the level at construction, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only; the caching allocator's
    reserve and the CUDA context are left out). CPU: the process's peak resident set
    size (all of the process's memory, tensors or not). Created before a model is
    built, the figure includes weights and optimiser state; created after, only the
    working memory of the tracked block.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mib = 0.0
        if device.type == "cuda":
            sync(device)
            self.baseline_kib = torch.cuda.memory_allocated(device) / 1024
            self.kind = "CUDA max allocated"
        else:
            current = _proc_status_kib("VmRSS")
            self.exact = current is not None and _reset_rss_peak()
            # Without a resettable peak mark only growth past the process's earlier peak
            # shows: the figure is then a lower bound.
            self.baseline_kib = current if self.exact else _max_rss_kib()
            self.kind = "process peak RSS" + ("" if self.exact else " (lower bound)")

    def _peak_kib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 1024
        peak = _proc_status_kib("VmHWM") if self.exact else None
        return peak if peak is not None else _max_rss_kib()

    @contextmanager
    def track(self):
        """Record the peak reached inside the ``with`` block (the largest over all blocks)."""
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.exact:
            _reset_rss_peak()
        try:
            yield self
        finally:
            sync(self.device)
            mib = max(0.0, self._peak_kib() - self.baseline_kib) / 1024
            self.peak_mib = max(self.peak_mib, mib)


# -- command line and report ----------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser, steps: int = 10, warmup: int = 3) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--steps", type=int, default=steps, help="timed repetitions")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed repetitions before them")
    parser.add_argument("--peak-size", type=int, default=DEFAULT_PEAK_SIZE,
                        help="matrix size of the matmul-peak measurement")


def runtime_description(device: torch.device) -> str:
    """One line: the device (GPU name or CPU model), torch version and thread count."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.processor() or platform.machine()
    return (f"device: {device} ({name})  torch {torch.__version__}  torch threads: {torch.get_num_threads()}"
            f"  cpu cores: {os.cpu_count()}")


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None




def precision_line(config, device: torch.device) -> str:
    amp = "bf16 autocast" if config.train.amp == "bf16" and device.type == "cuda" else "fp32"
    return f"precision: {amp}  compiled: {'yes' if config.train.compile else 'no'}"

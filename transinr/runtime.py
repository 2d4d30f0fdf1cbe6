"""Where and how a run executes: device choice, seeding, and the run record."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch


def smoke_mode() -> bool:
    """``TRANSINR_SMOKE=1`` (set in CI): the notebooks shrink every loop and the ``train``
    command stops after a few steps (:func:`transinr.train.smoke_budget`)."""
    return os.environ.get("TRANSINR_SMOKE", "0") not in ("", "0", "false", "False")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else Apple MPS, else CPU; anything else as given."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    from .config import ConfigError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} (train.device or --device): expected auto, cpu, cuda, "
                          f"cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} (train.device or --device) requested but CUDA is not "
                          f"available here; use auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} (train.device or --device): this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s), cuda:0 …")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name!r} (train.device or --device) requested but MPS is not available here")
    return device


def autocast_for(config, device: torch.device):
    """bf16 autocast where ``train.amp: bf16`` asks for it and the device is CUDA; off elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=config.train.amp == "bf16" and device.type == "cuda")


def check_amp(config, device: torch.device) -> None:
    """Refuse an amp mode the device cannot run; say so when it falls back to float32."""
    if config.train.amp != "bf16":
        return
    if device.type != "cuda":
        warnings.warn(f"train.amp=bf16 runs on CUDA only: training in float32 on {device}", stacklevel=3)
    elif not torch.cuda.is_bf16_supported():
        from .config import ConfigError

        raise ConfigError(f"train.amp='bf16' is not supported by {torch.cuda.get_device_name(device)}; "
                          f"expected train.amp=off on this GPU")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_revision() -> str | None:
    """The git commit the package is running from, if it runs from a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment_record(device: torch.device) -> dict:
    """Versions and machine facts saved beside every run, for reproducibility."""
    from . import __version__

    versions = {"transinr": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
                "numpy": np.__version__}
    for name in ("PIL", "yaml", "trimesh"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
    return {
        "versions": versions,
        "git_revision": git_revision(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "command": sys.argv,
    }


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask (Linux), capped by a cgroup v2 quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def choose_threads() -> str:
    """Set torch's CPU threads so a run does not oversubscribe the machine; say which and why.

    ``OMP_NUM_THREADS`` when it is set to a positive integer, else :func:`usable_cpus`.
    Deterministic on purpose (the load average is only mentioned, never acted on): the
    thread count can change float rounding, and a resumed run should compute as before.
    """
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    cpus = usable_cpus()
    if requested.isdigit() and int(requested) > 0:
        threads, why = int(requested), "OMP_NUM_THREADS"
    else:
        threads, why = cpus, f"the {cpus} CPU{'s' if cpus > 1 else ''} this process may use; " \
                             f"set OMP_NUM_THREADS=N to change"
    torch.set_num_threads(threads)
    line = f"threads: {threads} ({why})"
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    if threads > 1 and load >= cpus:
        line += (f"; the machine is busy (load {load:.1f} on {cpus} CPUs): OMP_NUM_THREADS=1 "
                 f"is often faster then")
    return line

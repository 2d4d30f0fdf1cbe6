"""One command that checks this kit on a GPU: paper-scale speed, memory, and that training works.

    python benchmarks/gpu_check.py                     # on a GPU; ≈ 5–8 minutes
    python benchmarks/gpu_check.py --out /some/folder  # where the results file goes
    python benchmarks/gpu_check.py --tiny --device cpu # tiny sizes: checks the script itself

It measures, in this order, and writes everything to ONE file,
``<out>/gpu_check_<device>_<host>_<date>.json`` (``--out``, else ``$OUT``, else
``benchmarks/results/``):

1. the fp32 and bf16 matmul peaks of the device (TF32 stays off, PyTorch's default);
2. for each setting (``--settings``: fp32, bf16 autocast, bf16 autocast + torch.compile):
   the 2D training step of ``celeba178`` at its batch on random 178 px images
   (images/s), and ``shapenet_chairs_1view``'s NVS training step on a synthetic batch
   of its shape and the rendering of one 128 px view (rays/s) — with GFLOP/s, the share
   of the matching matmul peak and peak CUDA memory (``train_throughput.measure`` and
   ``nvs_throughput.measure`` do the measuring);
3. ``--train-steps`` steps (default 300) of the ``emoji32`` config through the real
   training loop (``transinr.train.train``), in fp32 and in bf16 autocast, recording the
   loss curve and whether it falls.

A part that fails is recorded with its error and the rest still runs; the exit status is
1 if any part failed or a loss did not fall. ``--budget-s`` (default 450) skips what would
start after that many seconds, so the whole stays within 8 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch

import nvs_throughput
import train_throughput
from common import matmul_peak_gflops, runtime_description
from transinr.config import load_config
from transinr.data.augment import NO_AUGMENTATION
from transinr.runtime import git_revision, resolve_device
from transinr.train import read_metrics, train

IMAGE_CONFIG, NVS_CONFIG, TRAIN_CONFIG = "celeba178", "shapenet_chairs_1view", "emoji32"
SETTINGS = {"fp32": [], "bf16": ["train.amp=bf16"], "compile": ["train.amp=bf16", "train.compile=true"]}
# Tiny sizes with each config's own structure (celeba's 1 px border around 9 px patches,
# the NeRF's 2^0 … 2^8 encoding), so that a CPU runs the whole script in seconds.
TINY_MODEL = ["model.dim=32", "model.depth=1", "model.n_heads=2", "model.head_dim=16", "model.mlp_dim=64",
              "model.n_groups=4", "model.hyponet.depth=3", "model.hyponet.width=16"]
TINY = {IMAGE_CONFIG: TINY_MODEL + ["data.resolution=34"],
        NVS_CONFIG: TINY_MODEL + ["data.resolution=16", "nvs.n_samples=8", "nvs.train_rays=16",
                                  "nvs.render_chunk=128"],
        # The plain images: 20 tiny steps on the augmented stream are too noisy to show a falling loss.
        TRAIN_CONFIG: TINY_MODEL + ["train.batch_size=8", "train.warmup_steps=0"] + NO_AUGMENTATION}


def results_folder(out: str | None) -> Path:
    return Path(out or os.environ.get("OUT") or Path(__file__).parent / "results")


class Budget:
    """Seconds since the start; a part starts only while some are left."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> bool:
        return self.elapsed() < self.seconds


def run_part(record: dict, name: str, budget: Budget, fn) -> None:
    """Run ``fn() → dict`` into ``record[name]``; errors and skips are recorded, not raised."""
    if not budget.left():
        record[name] = {"status": "skipped", "reason": f"budget of {budget.seconds:.0f} s spent"}
        print(f"{name}: skipped (budget spent)")
        return
    started = time.perf_counter()
    try:
        record[name] = {"status": "ok", **fn()}
    except Exception as error:  # one broken part must not cost the rest of the run
        record[name] = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                        "traceback": traceback.format_exc()}
        print(f"{name}: FAILED — {type(error).__name__}: {error}")
    record[name]["seconds"] = round(time.perf_counter() - started, 1)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_for(setting: str, peaks: dict, device) -> tuple[float, str]:
    """The peak a setting's matmuls run against: bf16 where autocast is on (CUDA only)."""
    if setting != "fp32" and device.type == "cuda":
        return peaks["bf16"], "bf16"
    return peaks["fp32"], "fp32"


def image_step(setting: str, overrides: list[str], steps: int, warmup: int, device, peaks: dict) -> dict:
    result = train_throughput.measure(IMAGE_CONFIG, overrides, None, steps, warmup, device.type)
    peak, kind = peak_for(setting, peaks, device)
    print(f"{IMAGE_CONFIG} [{setting}] batch {result['batch']}: {result['images_per_s']:.1f} images/s, "
          f"{result['gflops']:.0f} GFLOP/s = {100 * result['gflops'] / peak:.0f}% of the {kind} peak, "
          f"{result['peak_memory_mib']:.0f} MiB")
    return {"batch": result["batch"], "images_per_s": result["images_per_s"],
            "ms_per_step": 1e3 * result["seconds_per_step"], "gflop_per_step": result["gflop_per_step"],
            "gflops": result["gflops"], "share_of_peak": result["gflops"] / peak, "peak_kind": kind,
            "peak_memory_mib": result["peak_memory_mib"]}


def nvs_steps(setting: str, overrides: list[str], steps: int, warmup: int, device, peaks: dict) -> dict:
    config = nvs_throughput.nvs_config(NVS_CONFIG, overrides)
    result = nvs_throughput.measure(config, None, None, steps, warmup, device)
    peak, kind = peak_for(setting, peaks, device)
    out = {"batch": result["batch"], "render_size": result["render_size"]}
    for phase in ("training", "rendering"):
        figures = result[phase]
        gflops = figures["gflop"] / figures["seconds"]
        out[phase] = {"rays_per_s": figures["rays"] / figures["seconds"], "ms": 1e3 * figures["seconds"],
                      "gflop": figures["gflop"], "gflops": gflops, "share_of_peak": gflops / peak,
                      "peak_kind": kind, "peak_memory_mib": figures["peak_memory_mib"]}
        print(f"{NVS_CONFIG} [{setting}] {phase}: {out[phase]['rays_per_s']:,.0f} rays/s, {gflops:.0f} GFLOP/s "
              f"= {100 * gflops / peak:.0f}% of the {kind} peak, {figures['peak_memory_mib']:.0f} MiB")
    return out


def training_run(setting: str, overrides: list[str], steps: int, device) -> dict:
    """``steps`` steps of the real training loop; the loss curve and whether it falls."""
    config = load_config(TRAIN_CONFIG, overrides + [
        f"train.max_images={steps * load_config(TRAIN_CONFIG, overrides).train.batch_size}",
        "train.log_every=10", f"train.eval_every={10 * steps}", f"train.checkpoint_every={10 * steps}"])
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        train(config, run_dir, device=device.type, progress=False, evaluate_at_end=False)
        seconds = time.perf_counter() - started
        losses = [(row["step"], row["loss"]) for row in read_metrics(Path(run_dir) / "metrics.jsonl")
                  if "loss" in row]
    values = [loss for _, loss in losses]
    fifth = max(1, len(values) // 5)
    first, last = sum(values[:fifth]) / fifth, sum(values[-fifth:]) / fifth
    falls = last < first
    print(f"{TRAIN_CONFIG} [{setting}] {steps} training steps in {seconds:.1f} s: loss {first:.4f} (first fifth) "
          f"→ {last:.4f} (last fifth): {'falls' if falls else 'DOES NOT FALL'}")
    return {"steps": steps, "wall_seconds": seconds, "loss_first_fifth": first, "loss_last_fifth": last,
            "loss_falls": falls, "loss_curve": losses}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="folder of the results file (default: $OUT, else "
                                                    "benchmarks/results)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma list of {', '.join(SETTINGS)} (compile = bf16 autocast + torch.compile)")
    parser.add_argument("--tiny", action="store_true", help="tiny models and few steps (a CPU check of the script)")
    parser.add_argument("--train-steps", type=int, default=None, help="steps of the training check (300; tiny: 20)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="start nothing after this many seconds")
    args = parser.parse_args(argv)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or not settings:
        parser.error(f"--settings {args.settings!r}: expected a comma list of {', '.join(SETTINGS)}")

    device = resolve_device(args.device)
    budget = Budget(args.budget_s)
    tiny = {name: (TINY[name] if args.tiny else []) for name in TINY}
    peak_size = 64 if args.tiny else (8192 if device.type == "cuda" else 4096)
    steps, warmup = (1, 0) if args.tiny else (10, 3)
    train_steps = args.train_steps or (20 if args.tiny else 300)
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
              "git": git_revision(), "runtime": runtime_description(device), "tiny": args.tiny,
              "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "settings": settings}
    print(record["runtime"])
    peaks = {"fp32": matmul_peak_gflops(device, peak_size)}
    peaks["bf16"] = (matmul_peak_gflops(device, peak_size, dtype=torch.bfloat16) if device.type == "cuda"
                     else None)
    record["matmul_peak_gflops"] = {**peaks, "size": peak_size}
    print(f"matmul peak ({peak_size}²): fp32 {peaks['fp32']:.0f} GFLOP/s"
          + (f", bf16 {peaks['bf16']:.0f} GFLOP/s" if peaks["bf16"] else ""))
    if device.type != "cuda":
        print("no CUDA device: bf16 autocast is off on a CPU, so the bf16 rows run in fp32")

    for setting in settings:
        # Compiling takes its own warm-up calls before the timed ones.
        setting_warmup = warmup + (2 if setting == "compile" and not args.tiny else 0)
        run_part(record, f"{IMAGE_CONFIG} {setting}", budget,
                 lambda: image_step(setting, tiny[IMAGE_CONFIG] + SETTINGS[setting], steps, setting_warmup,
                                    device, peaks))
        run_part(record, f"{NVS_CONFIG} {setting}", budget,
                 lambda: nvs_steps(setting, tiny[NVS_CONFIG] + SETTINGS[setting], steps, setting_warmup,
                                   device, peaks))
    for setting in ("fp32", "bf16"):
        run_part(record, f"{TRAIN_CONFIG} training {setting}", budget,
                 lambda: training_run(setting, tiny[TRAIN_CONFIG] + SETTINGS[setting], train_steps, device))

    record["total_seconds"] = round(budget.elapsed(), 1)
    parts = [value for value in record.values() if isinstance(value, dict) and "status" in value]
    record["all_ok"] = all(p["status"] != "failed" and p.get("loss_falls", True) for p in parts)
    folder = results_folder(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    path = folder / f"gpu_check_{device.type}_{platform.node()}_{stamp}{'_tiny' if args.tiny else ''}.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"{'all parts ok' if record['all_ok'] else 'SOME PARTS FAILED'}; {record['total_seconds']} s; "
          f"written to {path}")
    record["path"] = str(path)
    return record


if __name__ == "__main__":
    raise SystemExit(0 if main()["all_ok"] else 1)

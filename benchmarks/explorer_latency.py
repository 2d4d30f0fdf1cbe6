"""Notebook 02's camera explorer: how long a slider move takes to show a new view.

Drives :class:`transinr.nvs_widgets.ViewSynthesisExplorer` exactly as a dragged slider
does — one value change per slider step, each answered by a preview — then calls the
timer's :meth:`settle` (the full view once the slider is still), and prints the latency
of each kind of update as measured in the kernel (render, PNG, plotly scene update;
the browser's drawing is not included).

    OMP_NUM_THREADS=2 python benchmarks/explorer_latency.py            # the shipped 3D models
    python benchmarks/explorer_latency.py --smoke                     # tiny set, for CI
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from transinr import nvs_widgets
from transinr.pretrained import load_or_train


def drag(explorer, slider, values) -> list[float]:
    """Seconds of each update while ``slider`` is moved through ``values``."""
    seconds = []
    for value in values:
        start = time.perf_counter()
        slider.value = float(value)
        seconds.append(time.perf_counter() - start)
        assert explorer.last["quality"] == "preview"
    return seconds


def settle(explorer) -> float:
    start = time.perf_counter()
    explorer.settle()
    return time.perf_counter() - start


def line(name: str, seconds: list[float]) -> str:
    return (f"{name:<34} median {statistics.median(seconds) * 1e3:6.0f} ms   "
            f"max {max(seconds) * 1e3:6.0f} ms   ({len(seconds)} updates)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the tiny test set (seconds; numbers not meaningful)")
    parser.add_argument("--size", type=int, default=64, help="full view: pixels per side")
    parser.add_argument("--samples", type=int, default=64, help="full view: samples per ray")
    parser.add_argument("--steps", type=int, default=18, help="slider steps per drag")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    objects = {}
    for label, name in (("1 view", "shapes3d_chairs_1view"), ("2 views", "shapes3d_chairs_2view")):
        model, config, _ = load_or_train(name, max_images=32)
        dataset = nvs_widgets.held_out_objects(config, smoke=args.smoke)
        objects[label] = nvs_widgets.ViewedObject.from_dataset(model, config, dataset, 0, label=label)
    start = time.perf_counter()
    explorer = nvs_widgets.ViewSynthesisExplorer(objects, size=args.size, n_samples=args.samples)
    print(f"explorer built in {time.perf_counter() - start:.2f} s (dense points, plotly scene, first full view)")
    print(f"preview {explorer.preview_size} px × {explorer.preview_samples} samples; "
          f"full {explorer.size} px × {explorer.n_samples} samples")
    azimuth = explorer.azimuth.value
    previews = drag(explorer, explorer.azimuth, [azimuth + 5 * k for k in range(1, args.steps + 1)])
    previews += drag(explorer, explorer.elevation, [5 * k for k in range(1, args.steps // 2)])
    previews += drag(explorer, explorer.radius, [4.0 + 0.1 * k for k in range(1, args.steps + 1)])
    fulls = [settle(explorer)]
    for value in (30.0, -60.0, 120.0):
        explorer.azimuth.value = value
        fulls.append(settle(explorer))
    start = time.perf_counter()
    explorer.nerf.value = "2 views"
    switch = time.perf_counter() - start
    print(line("preview while dragging", previews))
    print(line("full view after release", fulls))
    print(f"{'switching NeRF (first time)':<34} {switch * 1e3:6.0f} ms")


if __name__ == "__main__":
    main()

"""This kit's steps beside the official implementation's, measured in one process.

    python benchmarks/against_official.py --official ~/src/trans-inr
    python benchmarks/against_official.py --official PATH --rounds 7 --steps 3 --phases image

PATH is the user's own checkout of the official code (github.com/yinboc/trans-inr); nothing
of it is part of this kit, and it needs ``pip install einops``. For each phase — the 2D
training step (``--config``, default ``emoji32_bench``), the NVS training step and rendering
one view (``--nvs-config``, default ``shapenet_chairs_1view``) — the script

1. builds the official model and this kit's at the same configuration and copies this kit's
   weights into the official one (the mapping is ``official_weights.py``);
2. checks, in float64, that both compute the same function: generated INR weights, outputs,
   the loss and every parameter's gradient agree to ``--tolerance``; it stops if not;
3. times both in fp32, alternating (``--rounds`` rounds of ``--steps`` calls, the order
   flipped every round), and prints each round's images/s (rays/s), GFLOP/s and share of
   the fp32 matmul peak measured in the same run, and the ratio with its spread.

Each side runs its own training step as written: the official one with ``torch.optim.Adam``
as its trainer builds it, this kit's with ``transinr.train.build_optimizer``. The data are
random tensors already in memory; the official NVS step computes its support rays from the
poses inside its tokenizer, as in its training loop (this kit's data loader hands rays over).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from common import (alternating_seconds, count_gflop, matmul_peak_gflops, runtime_description,
                    training_step_closures)
from nvs_throughput import random_cameras, synthetic_view_batch
from official_weights import Layout, kit_to_official, official_columns
from transinr.config import ConfigError, load_config
from transinr.models import build_model
from transinr.runtime import resolve_device
from transinr.tasks import build_task
from transinr.tasks.nvs import render_novel_view, render_weights

DEFAULT_CONFIG = "emoji32_bench"
DEFAULT_NVS_CONFIG = "shapenet_chairs_1view"
# The official NeRF's positional encoding is fixed: frequencies 2^0 … 2^8.
OFFICIAL_NERF_SIGMA = 256.0


# -- the official code ------------------------------------------------------------------


class Official:
    """The official ``models`` and ``utils`` packages, imported from the user's checkout."""

    def __init__(self, path: str | Path):
        path = Path(path).expanduser().resolve()
        if not (path / "models" / "trans_inr.py").is_file():
            raise SystemExit(f"--official {path}: not a checkout of the official trans-inr code "
                             f"(expected models/trans_inr.py in it)")
        for name in ("models", "utils"):
            loaded = sys.modules.get(name)
            if loaded is not None and not str(getattr(loaded, "__file__", "")).startswith(str(path)):
                raise SystemExit(f"a module named {name!r} ({loaded.__file__}) is already imported; the "
                                 f"official code's packages of that name cannot be loaded beside it")
        if importlib.util.find_spec("einops") is None:
            raise SystemExit("the official code needs einops: pip install einops")
        if importlib.util.find_spec("tensorboardX") is None:
            # Its utils package imports tensorboardX for training logs; no model code uses it.
            stand_in = types.ModuleType("tensorboardX")
            stand_in.SummaryWriter = None
            sys.modules["tensorboardX"] = stand_in
        sys.path.insert(0, str(path))
        import models
        import utils

        self.path, self.models, self.utils = path, models, utils

    def spec(self, config, kit_model, image_size: int) -> dict:
        """The official model spec of this kit's configuration (``models.make`` builds it)."""
        m, h = config.model, config.model.hyponet
        if m.name != "trans_inr":
            raise ConfigError(f"config {config.name}: model.name is {m.name!r}; the official code is Trans-INR")
        if m.dropout:
            raise ConfigError(f"config {config.name}: model.dropout is {m.dropout}; the same-function check "
                              f"needs 0")
        in_dim = kit_model.hyponet.in_dim
        pe_dim = kit_model.hyponet.encoding.out_dim // in_dim  # the official count: per coordinate
        transformer = {"name": "transformer_encoder",
                       "args": {"dim": m.dim, "depth": m.depth, "n_head": m.n_heads, "head_dim": m.head_dim,
                                "ff_dim": m.mlp_dim}}
        tokenizer_args = {"input_size": image_size, "patch_size": m.patch_size, "padding": m.padding}
        if config.task == "image":
            tokenizer = {"name": "imgrec_tokenizer", "args": tokenizer_args}
            hyponet = {"name": "hypo_mlp",
                       "args": {"depth": h.depth, "in_dim": in_dim, "out_dim": 3, "hidden_dim": h.width,
                                "use_pe": True, "pe_dim": pe_dim, "out_bias": h.out_bias,
                                "pe_sigma": h.pe_sigma}}
        else:
            if h.use_viewdirs:
                raise ConfigError(f"config {config.name}: the official NeRF with view directions has a "
                                  f"different layer structure; use model.hyponet.use_viewdirs=false")
            if h.pe_sigma != OFFICIAL_NERF_SIGMA:
                raise ConfigError(f"config {config.name}: model.hyponet.pe_sigma is {h.pe_sigma}; the official "
                                  f"NeRF's frequencies are fixed at 2^0 … 2^8 (pe_sigma {OFFICIAL_NERF_SIGMA:g})")
            tokenizer = {"name": "nvs_tokenizer", "args": tokenizer_args}
            hyponet = {"name": "hypo_nerf", "args": {"use_viewdirs": False, "depth": h.depth,
                                                     "hidden_dim": h.width, "use_pe": True, "pe_dim": pe_dim}}
        return {"name": "trans_inr", "args": {"tokenizer": tokenizer, "hyponet": hyponet, "n_groups": m.n_groups,
                                              "transformer_encoder": transformer}}

    def adam(self, model, lr: float):
        """Adam as the official trainer builds it."""
        return self.utils.make_optimizer(model.parameters(), {"name": "adam", "args": {"lr": lr}})

    # the official steps, as its trainers compute them

    def image_prediction(self, model, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) → the generated INRs on the pixel grid, (B, H, W, 3)."""
        hyponet = model({"inp": images})
        coord = self.utils.make_coord_grid(images.shape[-2:], (-1, 1), device=images.device)
        return hyponet(coord.unsqueeze(0).expand(images.shape[0], *coord.shape))

    def image_loss(self, model, images: torch.Tensor) -> torch.Tensor:
        prediction = self.image_prediction(model, images)
        target = images.permute(0, 2, 3, 1)
        return ((prediction - target) ** 2).view(images.shape[0], -1).mean(dim=-1).mean()

    @staticmethod
    def view_data(batch: dict, objects: slice = slice(None)) -> dict:
        """The official tokenizer's inputs: images, (B, V, 3, 4) poses, (B, V, 2) focal lengths."""
        rgb = batch["support_rgb"][objects]
        focal = batch["focal"][objects].view(-1, 1, 1).expand(*rgb.shape[:2], 2)
        return {"support_imgs": rgb, "support_poses": batch["support_poses"][objects][..., :3, :4],
                "support_focals": focal.to(rgb.dtype)}

    def render_rays(self, hyponet, origins, directions, config, rand: bool) -> torch.Tensor:
        nvs = config.nvs
        return self.utils.volume_rendering(hyponet, origins, directions, near=nvs.near, far=nvs.far,
                                           points_per_ray=nvs.n_samples, use_viewdirs=False, rand=rand)

    def nvs_loss(self, model, batch: dict, config, rand: bool = True) -> torch.Tensor:
        hyponet = model(self.view_data(batch))
        rendered = self.render_rays(hyponet, batch["query_rays_o"], batch["query_rays_d"], config, rand)
        return ((rendered - batch["query_rgb"]) ** 2).view(rendered.shape[0], -1).mean(dim=-1).mean()


def official_step_closures(official: Official, model, loss_fn, lr: float):
    """``(step, forward_backward)`` of the official training step (zero_grad, backward, Adam)."""
    optimizer = official.adam(model, lr)
    model.train()

    def step() -> None:
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # its trainer logs the loss every step

    def forward_backward() -> None:
        loss_fn().backward()

    return step, forward_backward


# -- one model pair --------------------------------------------------------------------


def build_pair(official: Official, config, image_size: int, device, dtype=torch.float32, perturb: float = 0.0):
    """(kit model, official model, layout) holding the same weights.

    ``perturb`` adds seeded noise to every kit parameter first (LayerNorms start at 1 and 0,
    which would hide a mapping error); parameters the official model lacks are zeroed.
    """
    torch.manual_seed(config.train.seed)
    kit = build_model(config, image_size).to(device, dtype)
    layout = Layout.of(kit)
    with torch.no_grad():
        if perturb:
            generator = torch.Generator().manual_seed(1)
            for parameter in kit.parameters():
                noise = torch.randn(parameter.shape, generator=generator, dtype=dtype)
                parameter.add_(perturb * noise.to(device))
        state = kit.state_dict()
        for name in layout.kit_only_names(state):
            state[name].zero_()
    official_model = official.models.make(official.spec(config, kit, image_size)).to(device, dtype)
    official_model.load_state_dict(kit_to_official(kit.state_dict(), layout), strict=True)
    return kit, official_model, layout


def max_difference(a: torch.Tensor, b: torch.Tensor, relative: bool = False) -> float:
    scale = max(a.abs().max().item(), 1e-300) if relative else 1.0
    return (a - b).abs().max().item() / scale


def gradient_difference(kit, official_model, layout) -> float:
    """The largest difference of any parameter's gradient, relative to that gradient's size."""
    kit_grads = kit_to_official({name: p.grad for name, p in kit.named_parameters()}, layout,
                                require_zero_extras=False)
    return max(max_difference(official_grad, kit_grads[name], relative=True)
               for name, official_grad in ((n, p.grad) for n, p in official_model.named_parameters()))


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """The official code makes helper tensors (Fourier frequencies, ones) in the default dtype."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


# -- the same-function checks (float64) -------------------------------------------------


def check_image(official: Official, config, size: int, batch: int, device) -> dict:
    """Generated weights, rendered pixels, loss and gradients of both, in float64."""
    with default_dtype(torch.float64):
        kit, official_model, layout = build_pair(official, config, size, device, torch.float64, perturb=0.05)
        images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2),
                            dtype=torch.float64).to(device)
        task = build_task(config)
        kit_weights = official_columns(kit(images), layout)
        hyponet = official_model({"inp": images})
        weights = max(max_difference(hyponet.params[name], w) for name, w in zip(layout.layer_names, kit_weights))
        prediction = max_difference(official.image_prediction(official_model, images).permute(0, 3, 1, 2),
                                    task.predict(kit, images))
        kit_loss, _ = task.training_loss(kit, images, 0)
        official_loss = official.image_loss(official_model, images)
        kit_loss.backward()
        official_loss.backward()
        return {"generated weights": weights, "rendered pixels": prediction,
                "loss": abs(kit_loss.item() - official_loss.item()),
                "gradients (relative)": gradient_difference(kit, official_model, layout)}


def float64_views(batch: dict, official: Official) -> dict:
    """The batch in float64, support rays recomputed from the poses in float64 as the official
    tokenizer does (this kit's rays are float32 data)."""
    out = {key: value.double() if torch.is_tensor(value) and value.is_floating_point() else value
           for key, value in batch.items()}
    height, width = out["support_rgb"].shape[-2:]
    data = official.view_data(out)
    out["support_rays_o"], out["support_rays_d"] = official.utils.poses_to_rays(
        data["support_poses"], height, width, data["support_focals"])
    return out


def check_views(official: Official, config, size: int, objects: int, device) -> dict:
    """Generated NeRF weights, rendered query rays (evenly spaced samples), loss and gradients."""
    with default_dtype(torch.float64):
        kit, official_model, layout = build_pair(official, config, size, device, torch.float64, perturb=0.05)
        batch32 = synthetic_view_batch(config, objects, device, seed=3)
        batch = float64_views(batch32, official)
        rays = max_difference(batch32["support_rays_d"].double(), batch["support_rays_d"])
        task = build_task(config)
        kit_weights = task.generate(kit, batch)
        hyponet = official_model(official.view_data(batch))
        weights = max(max_difference(hyponet.params[name], w)
                      for name, w in zip(layout.layer_names, official_columns(kit_weights, layout)))
        nvs = config.nvs
        origins, directions = batch["query_rays_o"], batch["query_rays_d"]
        kit_rendered = render_weights(kit.hyponet, kit_weights, origins, directions, batch["near"], batch["far"],
                                      nvs.n_samples, chunk=origins.shape[0] * origins.shape[1])
        official_rendered = official.render_rays(hyponet, origins, directions, config, rand=False)
        kit_loss = F.mse_loss(kit_rendered, batch["query_rgb"])
        official_loss = official.nvs_loss(official_model, batch, config, rand=False)
        kit_loss.backward()
        official_loss.backward()
        return {"generated weights": weights, "rendered rays": max_difference(kit_rendered, official_rendered),
                "loss": abs(kit_loss.item() - official_loss.item()),
                "gradients (relative)": gradient_difference(kit, official_model, layout),
                "_camera rays (this kit's float32 vs float64)": rays}


def report_check(name: str, differences: dict, tolerance: float) -> None:
    shown = ", ".join(f"{key.lstrip('_')} {value:.1e}" for key, value in differences.items())
    failed = [key for key, value in differences.items() if not key.startswith("_") and not value <= tolerance]
    print(f"  same function, float64 (max |Δ|): {shown}")
    if failed:
        raise SystemExit(f"{name}: the two implementations differ beyond {tolerance:g} in {', '.join(failed)}; "
                         f"the timing would not compare the same maths")
    print(f"  → equal within {tolerance:g}")


# -- timing ------------------------------------------------------------------------------


def timed_phase(name: str, unit: str, items: int, fns: dict, gflop: dict, rounds: int, steps: int, warmup: int,
                device) -> dict:
    seconds = alternating_seconds(fns, rounds, steps, warmup, device)
    return {"phase": name, "unit": unit, "items": items, "gflop": gflop, "seconds": seconds,
            "ratios": [o / k for o, k in zip(seconds["official"], seconds["kit"])]}


def report_phase(result: dict, peak: float) -> None:
    unit, items = result["unit"], result["items"]
    print(f"  GFLOP per call: official {result['gflop']['official']:.2f}, this kit {result['gflop']['kit']:.2f}")
    print(f"  {'round':>5}  {'official ' + unit + '/s':>18}  {'this kit ' + unit + '/s':>18}  {'kit / official':>14}")
    for index, ratio in enumerate(result["ratios"]):
        print(f"  {index + 1:>5}  {items / result['seconds']['official'][index]:>18,.1f}  "
              f"{items / result['seconds']['kit'][index]:>18,.1f}  {ratio:>13.2f}×")
    summary = []
    for side in ("official", "kit"):
        seconds = statistics.median(result["seconds"][side])
        gflops = result["gflop"][side] / seconds
        result[f"{side}_median"] = {"per_s": items / seconds, "gflops": gflops, "share_of_peak": gflops / peak}
        summary.append(f"{items / seconds:,.1f} {unit}/s = {gflops:.1f} GFLOP/s = {100 * gflops / peak:.0f}% of peak")
    ratios = result["ratios"]
    print(f"  median: official {summary[0]}; this kit {summary[1]}")
    print(f"  ratio (this kit's speed / the official's): median {statistics.median(ratios):.2f}×, "
          f"range {min(ratios):.2f}–{max(ratios):.2f}× over {len(ratios)} rounds")


def image_phase(official: Official, config, batch_size: int, args, device) -> dict:
    size = int(config.data.resolution)
    kit, official_model, _ = build_pair(official, config, size, device)
    images = torch.rand(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    kit_step, kit_fb = training_step_closures(config, build_task(config), kit, images, device)
    official_step, official_fb = official_step_closures(
        official, official_model, lambda: official.image_loss(official_model, images), config.train.lr)
    gflop = {"official": count_gflop(official_fb), "kit": count_gflop(kit_fb)}
    return timed_phase("2D training step", "images", batch_size, {"official": official_step, "kit": kit_step},
                       gflop, args.rounds, args.steps, args.warmup, device)


def nvs_phases(official: Official, config, objects: int, render_size: int, args, device) -> list[dict]:
    size = int(config.data.resolution)
    nvs = config.nvs
    kit, official_model, _ = build_pair(official, config, size, device)
    batch = synthetic_view_batch(config, objects, device, seed=config.train.seed)
    results = []
    if "nvs" in args.phases:
        kit_step, kit_fb = training_step_closures(config, build_task(config), kit, batch, device)
        official_step, official_fb = official_step_closures(
            official, official_model, lambda: official.nvs_loss(official_model, batch, config), config.train.lr)
        gflop = {"official": count_gflop(official_fb), "kit": count_gflop(kit_fb)}
        rays = objects * nvs.train_rays
        results.append(timed_phase("NVS training step", "rays", rays, {"official": official_step, "kit": kit_step},
                                   gflop, args.rounds, args.steps, args.warmup, device))
    if "render" in args.phases:
        kit.eval()
        official_model.eval()
        with torch.no_grad():
            weights = kit(batch["support_rgb"][:1], batch["support_rays_o"][:1], batch["support_rays_d"][:1])
            hyponet = official_model(official.view_data(batch, slice(0, 1)))
        pose, focal = random_cameras(1, render_size, 0.5 * (nvs.near + nvs.far), torch.Generator().manual_seed(1))
        pose = pose.to(device)
        focals = torch.full((1, 2), focal, device=device)

        def kit_render():
            return render_novel_view(kit, weights, pose, focal, render_size, render_size, nvs.near, nvs.far,
                                     nvs.n_samples, nvs.render_chunk)

        def official_render():
            with torch.no_grad():
                origins, directions = official.utils.poses_to_rays(pose[:, :3, :4], render_size, render_size, focals)
                return official.utils.batched_volume_rendering(
                    hyponet, origins, directions, near=nvs.near, far=nvs.far, points_per_ray=nvs.n_samples,
                    use_viewdirs=False, rand=False, batch_size=nvs.render_chunk)

        gflop = {"official": count_gflop(official_render), "kit": count_gflop(kit_render)}
        results.append(timed_phase(f"rendering one {render_size}×{render_size} view", "rays", render_size**2,
                                   {"official": official_render, "kit": kit_render}, gflop, args.rounds,
                                   max(1, args.steps // 2), min(args.warmup, 1), device))
    return results


# -- command line ------------------------------------------------------------------------


PHASES = ("image", "nvs", "render")


def phase_list(text: str) -> list[str]:
    phases = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown or not phases:
        raise argparse.ArgumentTypeError(f"--phases {text!r}: expected a comma list of {', '.join(PHASES)}")
    return phases


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="a checkout of github.com/yinboc/trans-inr")
    parser.add_argument("overrides", nargs="*", help="dotted overrides for both configs, e.g. model.n_groups=16")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="image config of the 2D step")
    parser.add_argument("--nvs-config", default=DEFAULT_NVS_CONFIG, help="NVS config of the NVS step and rendering")
    parser.add_argument("--phases", type=phase_list, default=list(PHASES), help="comma list of image,nvs,render")
    parser.add_argument("--batch", type=int, default=None, help="images per 2D step (default: the config's)")
    parser.add_argument("--nvs-batch", type=int, default=None,
                        help="objects per NVS step (default: the config's on a GPU, 2 on a CPU)")
    parser.add_argument("--render-size", type=int, default=None,
                        help="rendered view size (default: the data's on a GPU, 64 on a CPU)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--steps", type=int, default=3, help="timed calls per side and round (rendering: half)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per side before the first round")
    parser.add_argument("--tolerance", type=float, default=1e-10, help="of the float64 same-function check")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--peak-size", type=int, default=4096, help="matrix size of the matmul-peak measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    official = Official(args.official)
    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    print(runtime_description(device))
    print(f"official code: {official.path}")
    peaks = [matmul_peak_gflops(device, args.peak_size)]
    print(f"fp32 matmul peak ({args.peak_size}²), at the start: {peaks[0]:.1f} GFLOP/s")
    results = []
    if "image" in args.phases:
        config = load_config(args.config, args.overrides)
        batch = args.batch or config.train.batch_size
        size = int(config.data.resolution)
        print(f"\n2D training step: {config.name}, {size} px, batch {batch}, fp32, forward + backward + Adam")
        report_check("2D", check_image(official, config, size, min(batch, 4), device), args.tolerance)
        results.append(image_phase(official, config, batch, args, device))
    if {"nvs", "render"} & set(args.phases):
        config = load_config(args.nvs_config, args.overrides)
        if config.task != "nvs":
            raise ConfigError(f"--nvs-config {args.nvs_config}: a {config.task!r} config; expected an nvs one")
        objects = args.nvs_batch or (config.train.batch_size if on_gpu else 2)
        render_size = args.render_size or (int(config.data.resolution) if on_gpu else 64)
        size = int(config.data.resolution)
        print(f"\nNVS: {config.name}, {objects} object(s) × {config.data.n_support} view(s) of {size} px, "
              f"{config.nvs.train_rays} rays × {config.nvs.n_samples} points per object; rendering "
              f"{render_size}² rays in chunks of {config.nvs.render_chunk}; fp32")
        report_check("NVS", check_views(official, config, size, 2, device), args.tolerance)
        phases = nvs_phases(official, config, objects, render_size, args, device)
        results.extend(phases)
    peaks.append(matmul_peak_gflops(device, args.peak_size))
    peak = max(peaks)
    print(f"\nfp32 matmul peak at the end: {peaks[1]:.1f} GFLOP/s; shares below are of the higher, {peak:.1f}")
    for result in results:
        print(f"\n{result['phase']}")
        report_phase(result, peak)
    summary = {"device": runtime_description(device), "matmul_peak_gflops": peaks, "phases": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()

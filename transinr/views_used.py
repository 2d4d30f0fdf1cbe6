"""What a 2-view model does with each of its support views, measured on held-out objects.

``python -m transinr views-used MODEL [key=value …] [--max-items N] [--out FILE.json]``

For each test object the model generates its NeRF from both support views, from the first
alone and from the second alone (:func:`transinr.analysis.support_view_use`), and renders the
held-out views and the support views themselves. Printed, as means over objects:

* held-out PSNR given views {0, 1}, {0} and {1}: the feed-forward gain of a second view;
* the gain of adding view 1 to view 0 on the held-out views nearer view 1 than view 0, and on
  those nearer view 0 (a model that reads view 1 gains most where view 1 sees best);
* the NeRF whose weights are the mean of the two single-view NeRFs' weights, and how far the
  2-view weights lie from that mean: a model that averages what each view says instead of
  combining the two sits near it and scores about the same from it;
* the same gains by how far apart the two support cameras are (:data:`SEPARATION_BINS`): a
  model that combines its views gains most over its better view when they show opposite
  sides, and little when they show the same side;
* the PSNR of re-rendering each support view: a model that reproduces what it is shown scores
  higher on a view it was given than on one it was not;
* per Transformer layer, the share of the weight tokens' attention on each view's tokens
  (:func:`transinr.analysis.view_attention_shares`);
* whether the output depends on the input at all (:func:`transinr.analysis.input_dependence`):
  held-out PSNR given another object's two views, and how far the renders move when the views
  are swapped, against how far the two objects' true views differ.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

SUBSETS = ((0, 1), (0,), (1,))
# Bins of the angle between the two support cameras, seen from the object centre (degrees).
SEPARATION_BINS = ((0, 45), (45, 90), (90, 135), (135, 180))


def measure(source: str, overrides: list[str] | None = None, max_items: int | None = None,
            device: str = "cpu", batch_size: int = 8) -> dict:
    """The figures above for the model ``source`` (anything :func:`transinr.trained.load_trained`
    takes) on the test split of its own dataset, with two support views.

    Returns {"objects", "held_out": {subset: dB}, "gain_near_view": {"1": dB, "0": dB},
    "support": {subset: [dB view 0, dB view 1]}, "attention": [[view 0, view 1, weight tokens]
    per layer, or None for a model without weight tokens], "other_object": {"held_out": dB given another object's views, "render_change",
    "truth_change": RMS in [0, 1] units}, "per_object": {"separation": [degrees between the
    support cameras], subset: [held-out dB]}, "by_separation": [{"degrees": [lo, hi], "objects",
    "second_view": dB (0+1 minus 0), "over_better_view": dB (0+1 minus the better of 0 and 1)}
    per bin of :data:`SEPARATION_BINS`], "midpoint": {"held_out": dB from the mean of the
    single-view weights, "distance": mean relative distance of the 2-view weights from it}};
    subsets are written "0+1", "0", "1".
    """
    from torch.utils.data import DataLoader

    from . import analysis
    from .config import ConfigError, _merge, config_from_dict, config_to_dict, parse_overrides
    from .data.views import build_view_dataset
    from .tasks import build_task
    from .trained import load_trained

    trained = load_trained(source, device)
    model, config = trained.model.eval(), trained.config
    if config.task != "nvs":
        raise ConfigError(f"views-used: {source} is a {config.task} model; it needs a view-synthesis model")
    changes = parse_overrides(list(overrides or []))
    if "model" in changes or "task" in changes:
        raise ConfigError("views-used takes data/train/nvs overrides only: the model is the checkpoint's")
    changes.setdefault("data", {})["n_support"] = 2
    config = config_from_dict(_merge(config_to_dict(config), changes))
    task = build_task(config)
    dataset = build_view_dataset(config, "test")
    if max_items is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(max_items, len(dataset))))

    held_out = {s: [] for s in SUBSETS}
    support = {s: [] for s in SUBSETS}
    near = {"1": [], "0": []}
    shares = []
    separation = []  # (B,) degrees between each object's two support cameras
    midpoint = {"held_out": [], "distance": []}
    swap = {"other": [], "render_change": [], "truth_change": []}
    # Learned Init has no Transformer: every figure but the attention shares still applies.
    reads_with_attention = hasattr(model, "weight_tokens")
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            use = analysis.support_view_use(task, model, batch, SUBSETS)
            poses = batch["support_poses"]
            separation.append(analysis.camera_angles(poses[:, :1], poses)[:, 0, 1])
            midpoint["held_out"].append(use["midpoint_held_out"].mean(1))
            midpoint["distance"].append(use["midpoint_distance"])
            for s in SUBSETS:
                held_out[s].append(use["held_out"][s].mean(1))  # (B,) each object's mean over views
                support[s].append(use["support"][s])  # (B, 2)
            nearer_view_1 = use["angles"][..., 1] < use["angles"][..., 0]  # (B, Q)
            gain = use["held_out"][(0, 1)] - use["held_out"][(0,)]  # (B, Q)
            near["1"].append(gain[nearer_view_1])
            near["0"].append(gain[~nearer_view_1])
            if reads_with_attention:
                attention = analysis.weight_token_attention(model, batch["support_rgb"], batch["support_rays_o"],
                                                            batch["support_rays_d"])
                shares.append(analysis.view_attention_shares(attention) * len(batch["support_rgb"]))
            if len(batch["support_rgb"]) > 1:  # a lone last object has no other to swap with
                dependence = analysis.input_dependence(task, model, batch)
                for key in swap:
                    swap[key].append(dependence[key])
    n_objects = sum(len(x) for x in held_out[(0, 1)])

    def name(subset):
        return "+".join(str(v) for v in subset)

    def mean(chunks):
        values = torch.cat(chunks) if chunks else torch.empty(0)
        return float(values.mean()) if values.numel() else float("nan")

    per_object = {name(s): torch.cat(held_out[s]).tolist() for s in SUBSETS}
    per_object["separation"] = torch.cat(separation).tolist()
    per_object["midpoint"] = torch.cat(midpoint["held_out"]).tolist()
    return {
        "model": str(source),
        "objects": n_objects,
        "held_out": {name(s): mean(held_out[s]) for s in SUBSETS},
        "gain_near_view": {view: mean(chunks) for view, chunks in near.items()},
        "support": {name(s): torch.cat(support[s]).mean(0).tolist() for s in SUBSETS},
        "attention": (torch.stack(shares).sum(0) / n_objects).tolist() if shares else None,
        "other_object": {"held_out": mean(swap["other"]), "render_change": mean(swap["render_change"]),
                         "truth_change": mean(swap["truth_change"])},
        "per_object": per_object,
        "by_separation": gains_by_separation(per_object),
        "midpoint": {key: mean(chunks) for key, chunks in midpoint.items()},
    }


def in_separation_bin(degrees: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Which angles fall in the bin [lo, hi) (the last bin, ending at 180°, includes 180°)."""
    return (degrees >= lo) & ((degrees < hi) if hi < 180 else (degrees <= hi))


def gains_by_separation(per_object: dict) -> list[dict]:
    """The second view's feed-forward gains, per bin of the support cameras' separation.

    per_object: {"separation": [degrees], "0+1" / "0" / "1": [held-out dB]}, one entry per
    object. Returns one {"degrees", "objects", "second_view", "over_better_view"} per bin of
    :data:`SEPARATION_BINS` (NaN gains in an empty bin).
    """
    separation = torch.tensor(per_object["separation"])
    both, first, second = (torch.tensor(per_object[s]) for s in ("0+1", "0", "1"))
    rows = []
    for lo, hi in SEPARATION_BINS:
        inside = in_separation_bin(separation, lo, hi)
        n = int(inside.sum())

        def mean(x):
            return float(x[inside].mean()) if n else float("nan")

        rows.append({"degrees": [lo, hi], "objects": n, "second_view": mean(both - first),
                     "over_better_view": mean(both - torch.maximum(first, second))})
    return rows


def format_report(result: dict) -> str:
    held, support = result["held_out"], result["support"]
    lines = [f"{result['model']}: {result['objects']} test objects, two support views (0 and 1)",
             "given views | held-out PSNR | re-rendered view 0 | re-rendered view 1"]
    for subset in ("0+1", "0", "1"):
        lines.append(f"{subset:>11} | {held[subset]:13.2f} | {support[subset][0]:18.2f} | {support[subset][1]:18.2f}")
    lines.append(f"second view, feed-forward: {held['0+1'] - held['0']:+.2f} dB held-out "
                 f"({result['gain_near_view']['1']:+.2f} dB on the views nearer view 1, "
                 f"{result['gain_near_view']['0']:+.2f} dB on those nearer view 0)")
    lines.append(f"the mean of the two single-view NeRFs' weights: {result['midpoint']['held_out']:.2f} dB held-out; "
                 f"the 2-view weights lie {result['midpoint']['distance']:.2f}× the single-view weights' "
                 "distance from that mean")
    lines.append("by the angle between the two support cameras: objects | 0+1 minus 0 | 0+1 minus the better view")
    lines += [f"  {row['degrees'][0]:3d}–{row['degrees'][1]:3d}°: {row['objects']:3d} | {row['second_view']:+.2f} dB | "
              f"{row['over_better_view']:+.2f} dB" for row in result["by_separation"]]
    if result["attention"] is not None:
        lines.append("attention of the weight tokens, per layer: view 0 / view 1 / weight tokens")
        lines += [f"  layer {i + 1}: " + " / ".join(f"{x:.2f}" for x in row)
                  for i, row in enumerate(result["attention"])]
    other = result["other_object"]
    lines.append(f"given another object's views: {other['held_out']:.2f} dB held-out (own: {held['0+1']:.2f}); "
                 f"the renders move by {other['render_change']:.3f} RMS where the truth differs by "
                 f"{other['truth_change']:.3f}")
    return "\n".join(lines)


def cli_main(argv: list[str] | None = None) -> int:
    from .cli import parse_with_overrides

    parser = argparse.ArgumentParser(prog="transinr views-used", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", metavar="MODEL", help="a run folder, checkpoint, shipped name or .safetensors file")
    parser.add_argument("overrides", nargs="*", help="data/nvs overrides, e.g. data.root=…")
    parser.add_argument("--max-items", type=int, default=None, help="the first N test objects only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = parse_with_overrides(parser, argv or [])
    result = measure(args.model, args.overrides, args.max_items, args.device)
    print(format_report(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0

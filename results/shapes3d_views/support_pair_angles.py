"""How far apart two support views of a training chair are: the angle, seen from the object
centre, between every pair of one chair's training cameras (views 0 … nvs.train_views-1, the
views training draws its support pairs from), over every training chair of a config.

    python results/shapes3d_views/support_pair_angles.py [CONFIG] [key=value …]

Prints the number of pairs, the 10th / 25th / 50th / 75th / 90th percentiles and the share of
pairs in each bin of views-used's SEPARATION_BINS.
"""

import sys

import torch

from transinr.analysis import camera_angles
from transinr.config import load_config
from transinr.data.views import build_view_dataset
from transinr.views_used import SEPARATION_BINS, in_separation_bin


def pair_angles(config) -> torch.Tensor:
    """(pairs,) degrees between every two training cameras of every training object."""
    dataset = build_view_dataset(config, "train")
    n = config.nvs.train_views
    upper = torch.triu_indices(n, n, offset=1)
    angles = []
    for obj in dataset.objects:
        poses = torch.as_tensor(obj["poses"][:n]).float()[None]  # (1, n, 4, 4)
        angles.append(camera_angles(poses, poses)[0][upper[0], upper[1]])
    return torch.cat(angles)


def main(argv: list[str]) -> None:
    name, overrides = (argv[0], argv[1:]) if argv and "=" not in argv[0] else ("shapes3d_chairs_2view", argv)
    angles = pair_angles(load_config(name, overrides))
    percentiles = torch.quantile(angles, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))
    print(f"{len(angles):,} pairs of training cameras; percentiles 10/25/50/75/90: "
          + " / ".join(f"{p:.0f}°" for p in percentiles))
    for lo, hi in SEPARATION_BINS:
        share = float(in_separation_bin(angles, lo, hi).float().mean())
        print(f"  {lo:3d}–{hi:3d}°: {share:.1%} of pairs")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Tiny configs and data shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from transinr.config import Config, config_to_dict

REPO_ROOT = Path(__file__).resolve().parent.parent
FOLDER_RESOLUTION = 16


def tiny_image_config(**train) -> Config:
    config = Config(name="tiny")
    m = config.model
    m.dim, m.depth, m.n_heads, m.head_dim, m.mlp_dim = 32, 2, 2, 16, 64
    m.patch_size, m.padding, m.n_groups = 8, 0, 4
    m.hyponet.depth, m.hyponet.width, m.hyponet.pe_dim, m.hyponet.pe_sigma = 3, 16, 8, 8.0  # 16 features
    config.data.resolution = 32
    config.train.batch_size = 8
    config.train.lr = 1e-3
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) smooth random images in [0, 1] — learnable by a tiny INR."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def write_image_folder(root: Path, count: int = 40, size: int = 20, seed: int = 0) -> Path:
    """``count`` smooth ``size``-pixel PNGs in ``root`` (the ImageFolder splits them by hash)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR).save(root / f"img_{i:02d}.png")
    return root


def folder_config(root: Path, **train_options) -> Config:
    """The tiny Trans-INR on a 16 px image folder: 36 training images, 4 steps an epoch."""
    options = {"log_every": 1, "figure_images": 2, **train_options}
    config = tiny_image_config(**options)
    config.data.name, config.data.root, config.data.resolution = "folder", str(root), FOLDER_RESOLUTION
    return config


def write_config_yaml(config: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "transinr", *args]


def cli_environment() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="default")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), cwd=REPO_ROOT, env=cli_environment(), capture_output=True,
                          text=True, timeout=timeout)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def last_logged_step(run_dir: Path) -> int:
    """The last step in ``metrics.jsonl`` of a run that may be writing it right now."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    complete_lines = path.read_text().split("\n")[:-1]  # the last piece may be half-written
    return json.loads(complete_lines[-1])["step"] if complete_lines else 0


def loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) of every training line of ``metrics.jsonl``."""
    return [(record["step"], record["loss"]) for record in read_metrics(run_dir) if "loss" in record]


def tiny_nvs_config(root, n_support: int = 1, size: int = 16, train_views: int = 4,
                    tto_steps: int = 3, turntable_frames: int = 4) -> Config:
    """A tiny Trans-INR for posed views of a fabricated learnit folder at ``root``."""
    config = Config(name=f"tiny_nvs_{n_support}view", task="nvs")
    config.data.name, config.data.root, config.data.category = "learnit", str(root), "chair"
    config.data.resolution, config.data.n_support = size, n_support
    m = config.model
    m.dim, m.depth, m.n_heads, m.head_dim, m.mlp_dim = 32, 2, 2, 16, 64
    m.patch_size, m.padding, m.n_groups = 8, 0, 4
    m.hyponet.depth, m.hyponet.width, m.hyponet.pe_dim, m.hyponet.pe_sigma = 3, 16, 24, 8.0
    n = config.nvs
    n.near, n.far, n.n_samples, n.train_rays, n.train_views = 3.0, 5.0, 8, 16, train_views
    n.tto_steps, n.tto_rays, n.tto_lr, n.turntable_frames = tto_steps, 32, 1e-2, turntable_frames
    t = config.train
    t.batch_size, t.max_images, t.lr, t.checkpoint_every, t.device = 2, 6, 1e-3, 1000, "cpu"
    return config

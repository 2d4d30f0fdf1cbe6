"""Novel view synthesis end to end on a tiny procedural set written into tmp."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from transinr.config import Config
from transinr.data.procedural_shapes import build_embedded_3d
from transinr.data.views import build_view_dataset
from transinr.evaluate import evaluate_checkpoint
from transinr.models import build_model
from transinr.tasks import build_task
from transinr.tasks.nvs import render_novel_view
from transinr.train import train
from transinr.tto import optimise_on_support_views, support_mse, support_rays

from . import helpers

SIZE = 16
N_VIEWS = 6
TRAIN_VIEWS = 4  # views 4 and 5 are held out


@pytest.fixture(scope="module")
def views_root(tmp_path_factory):
    """4 procedural chairs (2 train, 1 val, 1 test), 6 views of 16 px each."""
    root = tmp_path_factory.mktemp("views")
    build_embedded_3d(root, n_objects_per_category=4, n_views=N_VIEWS, resolution=SIZE, categories=("chair",))
    return root


def tiny_nvs_config(root, n_support: int = 1) -> Config:
    return helpers.tiny_nvs_config(root, n_support, SIZE, TRAIN_VIEWS)


def first_batch(dataset, n: int):
    return default_collate([dataset[i] for i in range(n)])


def test_a_few_training_steps_write_results_figure_and_turntable(views_root, tmp_path):
    config = tiny_nvs_config(views_root)
    results = train(config, tmp_path / "run", device="cpu", progress=False)
    assert results["steps"] == 3
    assert math.isfinite(results["test_psnr_mean"]) and results["test_items"] == 1
    assert 0 < results["blank_white_psnr"] < 60
    assert (tmp_path / "run" / "samples.png").is_file()
    with Image.open(tmp_path / "run" / "turntable.gif") as gif:
        assert gif.n_frames == config.nvs.turntable_frames

    # Evaluation after test-time optimisation, switched on by overrides as on the command line.
    scores = evaluate_checkpoint(tmp_path / "run" / "checkpoint.pt", device="cpu",
                                 overrides=["nvs.evaluate_with_tto=true", "nvs.tto_steps=2"])
    assert scores["tto_steps"] == 2 and math.isfinite(scores["psnr_mean"])
    assert (tmp_path / "run" / "samples_tto.png").is_file()
    assert json.loads((tmp_path / "run" / "evaluation_test.json").read_text())["tto_steps"] == 2


def test_held_out_views_are_the_same_for_one_and_two_support_views(views_root):
    one = build_view_dataset(tiny_nvs_config(views_root, 1), "test")
    two = build_view_dataset(tiny_nvs_config(views_root, 2), "test")
    assert one.query_views_of(0) == two.query_views_of(0) == [4, 5]
    item = two[0]
    assert item["support_rgb"].shape == (2, 3, SIZE, SIZE)
    assert item["query_rgb"].shape == (2, 3, SIZE, SIZE)
    capped = tiny_nvs_config(views_root)
    capped.nvs.eval_views = 1
    assert len(build_view_dataset(capped, "test").query_views_of(0)) == 1


def test_foreground_rays_only_in_the_first_epochs(views_root):
    config = tiny_nvs_config(views_root)
    config.nvs.foreground_fraction, config.nvs.foreground_epochs, config.nvs.train_rays = 1.0, 2, 256
    dataset = build_view_dataset(config, "train")
    dataset.set_epoch(1)
    assert dataset.foreground_fraction == 1.0
    rays = dataset[0]["query_rgb"]  # (R, 3)
    assert (rays < 1.0).any(dim=-1).all(), "every ray should hit the object while the schedule is on"
    dataset.set_epoch(2)
    assert dataset.foreground_fraction == 0.0
    torch.manual_seed(0)
    rays = dataset[0]["query_rgb"]
    assert (rays == 1.0).all(dim=-1).any(), "rays anywhere in the view also hit the white background"


def test_rendered_novel_views_have_the_requested_shape(views_root):
    config = tiny_nvs_config(views_root)
    task = build_task(config)
    test_set = build_view_dataset(config, "test")
    model = build_model(config, SIZE).eval()
    batch = first_batch(test_set, 1)
    with torch.no_grad():
        weights = task.generate(model, batch)
    image = render_novel_view(model, weights, batch["query_poses"][:, 0], batch["focal"], 12, 20,
                              near=3.0, far=5.0, n_samples=8)
    assert image.shape == (1, 3, 12, 20)
    assert image.min() >= 0 and image.max() <= 1
    views = task.render_query_views(model, batch, weights)
    assert views.shape == batch["query_rgb"].shape


def test_test_time_optimisation_lowers_the_support_ray_error(views_root):
    torch.manual_seed(0)
    config = tiny_nvs_config(views_root)
    task = build_task(config)
    model = build_model(config, SIZE).eval()
    batch = first_batch(build_view_dataset(config, "test"), 1)
    with torch.no_grad():
        weights = task.generate(model, batch)
    kept = [w.clone() for w in weights]
    origins, directions, colours = support_rays(batch)
    before = support_mse(model.hyponet, weights, origins, directions, colours, 3.0, 5.0, 16)
    tuned = optimise_on_support_views(model.hyponet, weights, origins, directions, colours, 3.0, 5.0,
                               steps=30, lr=1e-2, n_rays=128, n_samples=16, progress=False)
    after = support_mse(model.hyponet, tuned, origins, directions, colours, 3.0, 5.0, 16)
    assert after.item() < 0.7 * before.item()
    # The generated weights are a starting point, never modified in place.
    assert all(torch.equal(a, b) for a, b in zip(weights, kept))
    assert [w.shape for w in tuned] == [w.shape for w in weights]


def test_two_support_views_give_twice_the_data_tokens(views_root):
    config = tiny_nvs_config(views_root, n_support=2)
    batch = first_batch(build_view_dataset(config, "train"), 2)
    model = build_model(config, SIZE)
    assert batch["support_rgb"].shape == (2, 2, 3, SIZE, SIZE)
    two = model.tokenizer(batch["support_rgb"], batch["support_rays_o"], batch["support_rays_d"])
    one = model.tokenizer(batch["support_rgb"][:, :1], batch["support_rays_o"][:, :1],
                          batch["support_rays_d"][:, :1])
    assert two.shape[1] == 2 * one.shape[1] == 2 * (SIZE // 8) ** 2
    loss, psnr = build_task(config).training_loss(model, batch, epoch=0)
    assert loss.ndim == 0 and math.isfinite(psnr)

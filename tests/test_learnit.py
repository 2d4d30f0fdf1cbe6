import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from transinr.data.learnit import LearnitShapeNet
from transinr.render import get_rays, pose_spherical

SIZE = 8
ANGLE = 0.69


def write_object(category_dir, object_id, n_views=6, shift=0):
    """An object whose view k is a solid colour k*10 + shift with a 2x2 transparent corner."""
    obj = category_dir / object_id
    obj.mkdir(parents=True)
    frames = []
    for k in range(n_views):
        rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
        rgba[..., :3] = k * 10 + shift
        rgba[..., 3] = 255
        rgba[:2, :2, 3] = 0  # background corner, composited to white
        Image.fromarray(rgba, "RGBA").save(obj / f"r_{k:03d}.png")
        pose = pose_spherical(30.0 * k, 10.0, 4.0)
        frames.append({"file_path": f"./r_{k:03d}", "transform_matrix": pose.tolist()})
    (obj / "transforms.json").write_text(json.dumps({"camera_angle_x": ANGLE, "frames": frames}))
    return obj


@pytest.fixture
def root(tmp_path):
    category_dir = tmp_path / "chairs"  # learnit spelling: plural folders, singular split files
    write_object(category_dir, "a", shift=0)
    write_object(category_dir, "b", shift=100)
    write_object(category_dir, "c", shift=3)
    broken_png = write_object(category_dir, "missing_png")
    (broken_png / "r_002.png").unlink()
    bad_json = write_object(category_dir, "bad_json")
    (bad_json / "transforms.json").write_text('{"camera_angle_x": 0.69, "frames": [')
    splits = {"train": ["a", "b", "missing_png", "bad_json"], "val": ["c"], "test": ["c", "a"]}
    (tmp_path / "chair_splits.json").write_text(json.dumps(splits))
    return tmp_path


def load(root, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = LearnitShapeNet(root, **kwargs)
    return dataset, caught


def test_skips_broken_objects_with_one_counting_warning(root):
    dataset, caught = load(root, category="chair", split="train")
    assert len(dataset) == 2
    assert [o["id"] for o in dataset.objects] == ["a", "b"]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipped 2 of 4" in message and "missing_png" in message and "bad_json" in message


def test_train_item_shapes_values_and_rays(root):
    dataset, _ = load(root, category="chairs", split="train", n_support=2, n_query=3)
    torch.manual_seed(0)
    item = dataset[1]
    assert item["object_id"] == "b"
    assert item["support_rgb"].shape == (2, 3, SIZE, SIZE)
    assert item["support_rays_o"].shape == item["support_rays_d"].shape == (2, SIZE, SIZE, 3)
    assert item["query_rgb"].shape == (3, 3, SIZE, SIZE)
    assert item["query_poses"].shape == (3, 4, 4)
    focal = 0.5 * SIZE / math.tan(0.5 * ANGLE)
    assert item["focal"].item() == pytest.approx(focal, rel=1e-6)
    assert item["near"].item() == 2.0 and item["far"].item() == 6.0
    # Five distinct views; each view's colour identifies it and matches its pose.
    views = []
    for rgb, pose in zip(torch.cat([item["support_rgb"], item["query_rgb"]]),
                         torch.cat([item["support_poses"], item["query_poses"]])):
        assert torch.allclose(rgb[:, :2, :2], torch.ones(3, 2, 2))  # transparent corner -> white
        k = round((rgb[0, 4, 4].item() * 255 - 100) / 10)
        views.append(k)
        assert torch.allclose(pose, pose_spherical(30.0 * k, 10.0, 4.0), atol=1e-5)
    assert len(set(views)) == 5
    o, d = get_rays(item["support_poses"], focal, SIZE, SIZE)
    assert torch.allclose(item["support_rays_d"], d) and torch.allclose(item["support_rays_o"], o)


def test_train_views_limit_the_draw(root):
    dataset, _ = load(root, category="chair", split="train", n_support=1, n_query=1, train_views=[4, 5])
    seen = set()
    for _ in range(20):
        item = dataset[0]
        for rgb in (item["support_rgb"], item["query_rgb"]):
            seen.add(round(rgb[0, 0, 4, 4].item() * 255 / 10))
    assert seen == {4, 5}


def test_test_split_has_fixed_support_and_all_other_queries(root):
    dataset, caught = load(root, category="chair", split="test", n_support=2, n_query="all")
    assert not caught and len(dataset) == 2
    a = dataset[1]
    assert a["object_id"] == "a"
    support_views = [round(x * 255 / 10) for x in a["support_rgb"][:, 0, 4, 4].tolist()]
    query_views = [round(x * 255 / 10) for x in a["query_rgb"][:, 0, 4, 4].tolist()]
    assert support_views == [0, 1]
    assert query_views == [2, 3, 4, 5]
    # With an int n_query the query views are a seeded, reproducible draw.
    first, _ = load(root, category="chair", split="test", n_support=1, n_query=2, seed=3)
    second, _ = load(root, category="chair", split="test", n_support=1, n_query=2, seed=3)
    for _ in range(3):
        assert torch.equal(first[0]["query_poses"], second[0]["query_poses"])
    assert first[0]["query_rgb"].shape == (2, 3, SIZE, SIZE)


def test_query_ray_sampling_with_foreground_fraction(root):
    dataset, _ = load(root, category="chair", split="val", n_support=1, n_query="all",
                      query_rays=64, foreground_fraction=1.0)
    item = dataset[0]
    assert item["query_rgb"].shape == item["query_rays_o"].shape == item["query_rays_d"].shape == (64, 3)
    # All rays from the foreground: none is white (the only background is the corner).
    assert (item["query_rgb"] < 0.99).all()
    # Each ray starts at the camera centre of the view its colour came from (view k
    # of object "c" has colour 10 k + 3).
    views = ((item["query_rgb"][:, 0] * 255 - 3) / 10).round()
    centres = torch.stack([pose_spherical(30.0 * k, 10.0, 4.0)[:3, 3] for k in views.tolist()])
    assert torch.allclose(item["query_rays_o"], centres, atol=1e-5)
    assert set(views.tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}  # view 0 is the support view


def test_resolution_downsamples_and_scales_focal(root):
    dataset, _ = load(root, category="chair", split="val", resolution=4, cache=True)
    item = dataset[0]
    assert item["support_rgb"].shape == (1, 3, 4, 4)
    assert item["support_rays_d"].shape == (1, 4, 4, 3)
    assert item["focal"].item() == pytest.approx(0.5 * 4 / math.tan(0.5 * ANGLE), rel=1e-6)
    # The 2x2 white corner becomes exactly one white pixel.
    assert torch.allclose(item["support_rgb"][0, :, 0, 0], torch.ones(3))
    assert torch.equal(dataset[0]["support_rgb"], item["support_rgb"])  # cache gives the same


def test_missing_root_and_split_file_errors_explain_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="learnit"):
        LearnitShapeNet(tmp_path / "nowhere", category="chair")
    with pytest.raises(FileNotFoundError, match="chair_splits.json"):
        LearnitShapeNet(tmp_path, category="chair")

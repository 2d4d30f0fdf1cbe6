"""Notebook 02's callbacks (posed views in, a NeRF out), on a tiny procedural set in tmp.

Geometry is checked with a known radiance field — a black ball of radius 0.5 at the
origin — so that what a render should show can be computed by hand; the model-side
callbacks run a tiny untrained Trans-INR.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from transinr import nvs_widgets
from transinr.config import Config
from transinr.data.procedural_shapes import build_embedded_3d
from transinr.data.views import build_view_dataset
from transinr.models import build_model
from transinr.render import pose_spherical

from . import helpers

SIZE = 16
BALL_RADIUS = 0.5


class BallNeRF(torch.nn.Module):
    """A radiance field with no weights of its own: a black ball at the origin, empty elsewhere."""

    def forward(self, points: torch.Tensor, weights, **extra) -> torch.Tensor:
        inside = (points.norm(dim=-1, keepdim=True) < BALL_RADIUS).float()
        return torch.cat([torch.zeros_like(points), 60.0 * inside], dim=-1)


@pytest.fixture(scope="module")
def views_root(tmp_path_factory):
    """2 procedural chairs (1 train, 1 test), 4 views of 16 px; view 3 is held out."""
    root = tmp_path_factory.mktemp("views")
    build_embedded_3d(root, n_objects_per_category=2, n_views=4, resolution=SIZE, categories=("chair",))
    return root


def tiny_config(root, n_support: int = 1) -> Config:
    return helpers.tiny_nvs_config(root, n_support, SIZE, train_views=3, tto_steps=2, turntable_frames=3)


def viewed(root, n_support: int = 1, seed: int = 0) -> nvs_widgets.ViewedObject:
    config = tiny_config(root, n_support)
    torch.manual_seed(seed)
    model = build_model(config, SIZE)
    return nvs_widgets.ViewedObject.from_dataset(model, config, build_view_dataset(config, "test"), 0,
                                                 label=f"{n_support} view")


@pytest.fixture(scope="module")
def ball(views_root) -> nvs_widgets.ViewedObject:
    """The test chair's cameras around the known ball field."""
    obj = viewed(views_root)
    return nvs_widgets.ViewedObject(BallNeRF(), obj.task, obj.batch, [torch.zeros(1, 1, 1)], "ball")


def dark_fraction(image: np.ndarray) -> float:
    return float((image.mean(-1) < 0.5).mean())


# ------------------------------------------------------------------ the camera sliders


def test_an_orbit_view_is_rendered_from_the_requested_camera(ball):
    azimuth, elevation, radius = ball.support_orbit
    assert radius == pytest.approx(4.0, abs=1e-4)  # the procedural set's cameras
    result = nvs_widgets.render_orbit_view(ball, 30.0, 20.0, radius, size=12, n_samples=16)
    assert result["image"].shape == (12, 12, 3) and result["image"].dtype == np.float32
    assert 0.0 <= result["image"].min() and result["image"].max() <= 1.0
    assert torch.allclose(result["pose"], pose_spherical(30.0, 20.0, radius))
    assert result["seconds"] > 0 and result["n_samples"] == 16
    assert 0.05 < dark_fraction(result["image"]) < 0.3  # the ball, on white, seen whole


def test_a_smaller_preview_keeps_the_field_of_view(ball):
    # The ball covers the same share of the picture at 32 and 16 px: the focal length scales
    # with the size (with the 16 px focal length, a 32 px render would show a quarter of it).
    azimuth, elevation, radius = ball.support_orbit
    large = nvs_widgets.render_orbit_view(ball, azimuth, elevation, radius, size=32, n_samples=64)["image"]
    small = nvs_widgets.render_orbit_view(ball, azimuth, elevation, radius, size=16, n_samples=64)["image"]
    assert dark_fraction(large) == pytest.approx(dark_fraction(small), abs=0.03)
    assert ball.focal_at(32) == pytest.approx(2 * float(ball.batch["focal"][0]))


def test_the_depth_window_moves_with_the_camera(ball):
    near, far = float(ball.batch["near"][0]), float(ball.batch["far"][0])
    assert ball.depth_window(6.0) == pytest.approx((near + 2.0, far + 2.0), abs=1e-4)
    assert ball.depth_window(0.5)[0] == nvs_widgets.MIN_NEAR  # never behind the camera
    # From 6 units away the ball (depths 5.5–6.5) lies outside the views' window [3, 5] and is
    # seen only because the window follows; its area falls with the square of the distance.
    close = dark_fraction(nvs_widgets.render_orbit_view(ball, 0.0, 10.0, 4.0, size=32, n_samples=64)["image"])
    far_away = dark_fraction(nvs_widgets.render_orbit_view(ball, 0.0, 10.0, 6.0, size=32, n_samples=64)["image"])
    assert far_away > 0
    assert far_away / close == pytest.approx((4.0 / 6.0) ** 2, rel=0.3)


# ------------------------------------------------------------------ the object in 3D


def test_the_dense_points_are_exactly_the_ball(ball):
    grid = 20
    points, colours = nvs_widgets.density_point_cloud(ball, grid=grid)
    axis = np.linspace(-1.0, 1.0, grid, dtype=np.float32)
    lattice = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    assert len(points) == (np.linalg.norm(lattice, axis=-1) < BALL_RADIUS).sum() > 0
    assert np.linalg.norm(points, axis=-1).max() < BALL_RADIUS
    assert colours.shape == points.shape and np.allclose(colours, 0.0)
    assert len(nvs_widgets.density_point_cloud(ball, grid=grid, max_points=10)[0]) == 10


def test_the_scene_holds_the_object_the_support_cameras_and_the_novel_camera(views_root, ball):
    go = pytest.importorskip("plotly.graph_objects")
    two = viewed(views_root, n_support=2)
    points, colours = nvs_widgets.density_point_cloud(ball, grid=12)
    pose = pose_spherical(75.0, 15.0, 4.5)
    figure = nvs_widgets.scene_figure(two, pose, points, colours)
    assert isinstance(figure, go.Figure)
    names = [trace.name for trace in figure.data]
    assert names[1:] == ["support view 1", "support view 2", "novel view"] and names[0].startswith("object")
    novel = figure.data[-1]
    assert np.allclose([novel.x[0], novel.y[0], novel.z[0]], pose[:3, 3].numpy(), atol=1e-5)  # apex
    support = figure.data[1]
    assert np.allclose([support.x[0], support.y[0], support.z[0]], two.support_poses[0, :3, 3].numpy(), atol=1e-5)
    assert len(nvs_widgets.scene_figure(two).data) == 2  # cameras only, no novel view, no points


# ------------------------------------------------------------------ held-out views and TTO


def test_held_out_psnr_is_the_evaluation_score(views_root):
    obj = viewed(views_root)
    result = nvs_widgets.heldout_views(obj)
    assert result["rendered"].shape == result["truth"].shape == obj.batch["query_rgb"][0].shape
    assert result["psnr_mean"] == pytest.approx(obj.task.psnr(obj.model, obj.batch).item(), abs=1e-4)
    assert math.isfinite(result["psnr_mean"])


def test_test_time_optimisation_gives_a_new_object_and_keeps_the_old(views_root):
    obj = viewed(views_root)
    kept = [w.clone() for w in obj.weights]
    tuned = obj.optimised(steps=2, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(obj.weights, kept))
    assert any(not torch.equal(a, b) for a, b in zip(tuned.weights, obj.weights))
    assert tuned.batch is obj.batch and "TTO (2 steps)" in tuned.label
    assert all(torch.equal(a, b) for a, b in zip(obj.optimised(steps=0).weights, obj.weights))


def test_one_and_two_views_are_compared_on_the_same_held_out_views(views_root):
    one, two = viewed(views_root, 1), viewed(views_root, 2)
    assert torch.equal(one.batch["query_rgb"], two.batch["query_rgb"])
    comparison = nvs_widgets.compare_heldout({"1 view": one, "2 views": two}, max_views=1, n_samples=8)
    assert set(comparison["psnr"]) == {"1 view", "2 views"}
    assert comparison["views"]["2 views"]["rendered"].shape == (1, 3, SIZE, SIZE)
    # Rows: ground truth, then each NeRF; columns: 1 held-out view + up to 2 support views.
    assert len(comparison["figure"].axes) == 3 * 3
    assert "ViewedObject" not in str(one) and "1 support view" in str(one)


def test_an_object_outside_the_split_is_named(views_root):
    config = tiny_config(views_root)
    with pytest.raises(IndexError, match="object 5 is not in the test split"):
        nvs_widgets.ViewedObject.from_dataset(build_model(config, SIZE), config,
                                              build_view_dataset(config, "test"), 5)


# ------------------------------------------------------------------ turntable


def test_turntable_frames_circle_the_object_and_make_a_gif(ball):
    frames = nvs_widgets.turntable_frames(ball, n_frames=4, size=12, n_samples=16)
    assert len(frames) == 4 and frames[0].shape == (12, 12, 3) and frames[0].dtype == np.uint8
    azimuth, _, radius = ball.support_orbit
    first = nvs_widgets.render_orbit_view(ball, azimuth, 30.0, radius, size=12, n_samples=16)["image"]
    assert np.abs(frames[0].astype(float) / 255 - first).max() < 1e-2  # starts at the support camera
    # The ball looks the same from everywhere (the GIF would merge equal frames): distinct frames.
    distinct = [np.full((12, 12, 3), 60 * k, dtype=np.uint8) for k in range(4)]
    with Image.open(io.BytesIO(nvs_widgets.gif_bytes(distinct))) as gif:
        assert gif.n_frames == 4 and gif.size == (132, 132)  # enlarged ×11 to at least 128 px
    assert len(nvs_widgets.turntable_frames(ball, size=8, n_samples=4)) == 3  # nvs.turntable_frames


# ------------------------------------------------------------------ the explorer


def test_the_explorer_previews_while_dragging_and_renders_the_full_view_when_still(views_root, ball):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("plotly.graph_objects")
    explorer = nvs_widgets.ViewSynthesisExplorer({"ball": ball, "2 views": viewed(views_root, 2)},
                                                 size=12, n_samples=8, grid=8, preview_size=6, preview_samples=4)
    assert explorer.azimuth.continuous_update is True  # every step of a drag reaches the kernel
    assert explorer.last["label"] == "ball" and explorer.last["quality"] == "full"
    explorer.azimuth.value = 90.0
    preview = explorer.last
    assert preview["quality"] == "preview" and preview["image"].shape == (6, 6, 3)
    assert preview["n_samples"] == 4 and preview["seconds"] >= preview["render_seconds"] > 0
    assert "preview" in explorer.caption.value and "updated in" in explorer.caption.value
    full = explorer.settle()
    assert full["quality"] == "full" and full["image"].shape == (12, 12, 3) and full["azimuth"] == 90.0
    assert torch.allclose(full["pose"], pose_spherical(90.0, explorer.elevation.value, explorer.radius.value))
    assert full["scene"].data[-1].name == "novel view"
    explorer.radius.value = 5.0
    assert explorer.last["far"] == pytest.approx(float(ball.batch["far"][0]) + 1.0, abs=1e-3)
    explorer.nerf.value = "2 views"
    assert explorer.last["label"] == "2 views" and set(explorer._clouds) == {"ball", "2 views"}
    assert len(explorer.supports.children) == 2
    with pytest.raises(ValueError, match="at least one"):
        nvs_widgets.ViewSynthesisExplorer({})


def test_the_explorer_moves_only_the_novel_camera_and_keeps_the_users_view_of_the_scene(ball):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")  # plotly's FigureWidget
    explorer = nvs_widgets.ViewSynthesisExplorer(ball, size=8, n_samples=4, grid=8)
    scene = explorer.scene
    assert scene.layout.uirevision  # plotly keeps a camera the user turned across updates
    before = {trace.name: (trace.x, trace.y, trace.z) for trace in scene.data}
    explorer.elevation.value = 40.0
    after = {trace.name: (trace.x, trace.y, trace.z) for trace in explorer.scene.data}
    assert explorer.scene is scene and list(after) == list(before)
    assert after["novel view"] != before["novel view"]
    assert all(after[name] == before[name] for name in before if name != "novel view")
    assert list(scene.layout.scene.xaxis.range) == pytest.approx([-1.1 * explorer.radius.max, 1.1 * explorer.radius.max])


class GhostNeRF(BallNeRF):
    """The ball, and a copy of it at x = 2.2 (outside the unit sphere): what a NeRF whose
    Fourier features repeat may hold where it was never trained."""

    def forward(self, points, weights, **extra):
        return super().forward(points, weights) + super().forward(points - torch.tensor([2.2, 0.0, 0.0]), weights)


def test_novel_views_render_only_inside_the_objects_sphere(ball):
    ghost = nvs_widgets.ViewedObject(GhostNeRF(), ball.task, ball.batch, ball.weights, "ghost")
    # From 6 units away on the -y axis, looking at the origin, the copy is in the picture.
    unbounded = nvs_widgets.render_orbit_view(ghost, -90.0, 0.0, 6.0, size=32, n_samples=96, bound=None)["image"]
    bounded = nvs_widgets.render_orbit_view(ghost, -90.0, 0.0, 6.0, size=32, n_samples=96, bound=1.05)["image"]
    only_ball = nvs_widgets.render_orbit_view(ball, -90.0, 0.0, 6.0, size=32, n_samples=96, bound=None)["image"]
    assert dark_fraction(unbounded) > dark_fraction(only_ball) + 0.01  # the ghost shows without the bound
    assert dark_fraction(bounded) == pytest.approx(dark_fraction(only_ball), abs=0.01)
    origins = torch.tensor([[0.0, 0.0, 4.0], [0.0, 3.0, 4.0]])
    t_in, t_out, hit = nvs_widgets.sphere_interval(origins, torch.tensor([[0.0, 0.0, -2.0]] * 2), 1.0)
    assert hit.tolist() == [True, False] and t_in[0] == pytest.approx(1.5) and t_out[0] == pytest.approx(2.5)


def test_the_latency_benchmark_drives_the_explorer_as_a_slider_does(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ipywidgets")
    import sys

    monkeypatch.setenv("TRANSINR_DATA", str(tmp_path))  # the smoke set is built here, in well under a second
    monkeypatch.syspath_prepend(str(helpers.REPO_ROOT / "benchmarks"))
    import explorer_latency

    explorer_latency.main(["--smoke", "--size", "16", "--samples", "8", "--steps", "3"])
    out = capsys.readouterr().out
    assert "preview while dragging" in out and "full view after release" in out and "(6 updates)" in out and "(4 updates)" in out
    assert (tmp_path / "shapes3d" / "64px-2objects-3views" / "chair_splits.json").is_file()
    assert "explorer_latency" in sys.modules

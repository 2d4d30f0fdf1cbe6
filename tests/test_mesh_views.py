import json
import warnings

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")

from transinr.data.learnit import LearnitShapeNet  # noqa: E402
from transinr.data.mesh_views import (  # noqa: E402
    OBJECT_CONVENTION,
    cli_main,
    normalise_to_unit_sphere,
    render_mesh_folder,
    render_mesh_views,
    split_ids,
)
from transinr.data.procedural_shapes import CATEGORIES, build_embedded_3d, make_shape  # noqa: E402
from transinr.render import get_rays, pose_spherical  # noqa: E402


def ray_box_hits(origins, dirs, half):
    """Slab test: does each ray hit the axis-aligned box [-half, half]^3?"""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - origins) / dirs
        t2 = (half - origins) / dirs
    t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
    t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
    return (t_near <= t_far) & (t_far > 0)


def boundary(mask):
    """Pixels whose 4-neighbourhood is not uniform in ``mask``."""
    padded = np.pad(mask, 1, mode="edge")
    neighbours = [padded[1:-1, :-2], padded[1:-1, 2:], padded[:-2, 1:-1], padded[2:, 1:-1]]
    return np.any([n != mask for n in neighbours], axis=0)


@pytest.mark.parametrize("azimuth,elevation", [(20.0, 30.0), (135.0, -50.0)])
def test_box_silhouette_matches_analytic_projection(azimuth, elevation):
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    box.visual.face_colors = [200, 40, 40, 255]
    size, focal = 32, 40.0
    pose = pose_spherical(azimuth, elevation, 4.0)
    rgba = render_mesh_views(box, pose[None].numpy(), focal, size, size, supersample=2)
    assert rgba.shape == (1, size, size, 4) and rgba.dtype == np.uint8
    origins, dirs = get_rays(pose, focal, size, size)
    expected = ray_box_hits(origins.double().numpy(), dirs.double().numpy(), 0.5)
    seen = rgba[0, ..., 3] >= 128
    assert expected.sum() > 100
    wrong = seen != expected
    assert not (wrong & ~boundary(expected)).any()  # disagreement only on the rim
    assert wrong.sum() <= 0.1 * boundary(expected).sum() + 2
    inside = expected & ~boundary(expected)
    assert (rgba[0, ..., 3][inside] == 255).all() and (rgba[0, ..., 3][~expected & ~boundary(expected)] == 0).all()
    # Shaded red: red dominates, and lit faces are not black.
    red = rgba[0][inside].astype(int)
    assert (red[:, 0] > red[:, 1] + 50).all() and red[:, 0].min() > 60


def test_material_colours_use_main_colour_and_texture_mean(tmp_path):
    from PIL import Image

    from transinr.data.mesh_views import load_mesh

    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    uv = np.random.default_rng(0).uniform(size=(len(box.vertices), 2))
    texture = Image.fromarray(np.tile(np.array([[[0, 0, 200]], [[0, 100, 200]]], np.uint8), (2, 4, 1)))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=trimesh.visual.material.SimpleMaterial(image=texture))
    box.export(tmp_path / "textured.obj")
    _, faces, albedo = load_mesh(tmp_path / "textured.obj")
    assert albedo.shape == (len(faces), 3)
    assert np.allclose(albedo[0], [0.0, 50 / 255, 200 / 255], atol=0.02)  # mean of the texture
    pbr = trimesh.visual.material.PBRMaterial(baseColorFactor=[255, 128, 0, 255])
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=pbr)
    box.export(tmp_path / "pbr.glb")
    _, _, albedo = load_mesh(tmp_path / "pbr.glb")
    assert np.allclose(albedo, [1.0, 128 / 255, 0.0], atol=0.01)


def test_normalise_to_unit_sphere_and_up_axis():
    vertices = np.array([[0.0, 0.0, 0.0], [2.0, 10.0, 0.0], [2.0, 0.0, 1.0]])
    v = normalise_to_unit_sphere(vertices, up_axis="y")
    assert np.linalg.norm(v, axis=1).max() == pytest.approx(1.0)
    # The long +y extent of the input now runs along +z, and its front (+z) faces +y.
    assert np.ptp(v[:, 2]) > np.ptp(v[:, 1]) and v[1, 2] > 0
    assert v[2, 1] > v[0, 1]
    assert np.allclose(v[:, 0], -(vertices[:, 0] - 1.0) / np.linalg.norm(vertices - [1, 5, 0.5], axis=1).max())


def test_procedural_objects_face_plus_y():
    """Cars are longer along their front-back axis, which the convention puts along y."""
    for k in range(3):
        car = make_shape("car", np.random.default_rng(k))
        assert np.ptp(car.vertices[:, 1]) > 1.5 * np.ptp(car.vertices[:, 0])
        nose = car.vertices[:, 1] > car.vertices[:, 1].max() - 0.05
        assert car.vertices[nose, 1].mean() > 0  # the headlights sit at +y


def test_split_ids_is_seeded_and_disjoint():
    ids = [f"o{i}" for i in range(20)]
    splits = split_ids(ids, seed=1)
    assert splits == split_ids(list(reversed(ids)), seed=1)
    assert sorted(sum(splits.values(), [])) == sorted(ids)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (16, 2, 2)
    assert split_ids(["a", "b"], seed=0)["test"] and split_ids(["a"], seed=0)["train"] == ["a"]


def test_render_mesh_folder_writes_learnit_layout(tmp_path):
    meshes = tmp_path / "meshes"
    (meshes / "sub").mkdir(parents=True)
    box = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    box.visual.face_colors = [30, 160, 60, 255]
    box.export(meshes / "crate.ply")
    trimesh.creation.icosphere(subdivisions=2).export(meshes / "sub" / "ball.obj")
    trimesh.creation.cylinder(radius=0.3, height=1.0).export(meshes / "can.glb")
    (meshes / "broken.obj").write_text("this is not a mesh\n")
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli_main([str(meshes), str(out), "--category", "thing", "--n-views", "4", "--resolution", "12", "--seed", "3"])
    assert any("skipped 1 of 4" in str(w.message) for w in caught)
    splits = json.loads((out / "thing_splits.json").read_text())
    ids = sorted(sum(splits.values(), []))
    assert ids == ["ball", "can", "crate"]
    meta = json.loads((out / "thing" / "crate" / "transforms.json").read_text())
    assert len(meta["frames"]) == 4 and meta["frames"][0]["file_path"] == "./r_000"
    pose = np.array(meta["frames"][2]["transform_matrix"])
    assert np.linalg.norm(pose[:3, 3]) == pytest.approx(4.0, abs=1e-5)
    first = (out / "thing" / "crate" / "r_001.png").read_bytes()
    # Deterministic: a second run with overwrite produces the same files.
    with pytest.warns(UserWarning, match="skipped 1"):
        render_mesh_folder(meshes, tmp_path / "again2", "thing", n_views=4, resolution=12, seed=3, overwrite=True)
    assert (tmp_path / "again2" / "thing" / "crate" / "r_001.png").read_bytes() == first
    split = next(s for s in ("train", "val", "test") if splits[s])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = LearnitShapeNet(out, category="thing", split=split, n_support=1, n_query=3)
    item = dataset[0]
    assert item["support_rgb"].shape == (1, 3, 12, 12)
    assert (item["support_rgb"] < 0.99).any() and (item["support_rgb"] > 0.99).any()  # object on white


def test_procedural_shapes_are_seeded_and_coloured():
    for category in CATEGORIES:
        a = make_shape(category, np.random.default_rng(5))
        b = make_shape(category, np.random.default_rng(5))
        c = make_shape(category, np.random.default_rng(6))
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.visual.face_colors, b.visual.face_colors)
        assert not (a.vertices.shape == c.vertices.shape and np.allclose(a.vertices, c.vertices))
        assert len(np.unique(a.visual.face_colors, axis=0)) >= 2  # several coloured parts
    with pytest.raises(ValueError, match="unknown category"):
        make_shape("sofa", np.random.default_rng(0))


def test_build_embedded_3d_tiny_budget_loads(tmp_path):
    root = build_embedded_3d(tmp_path / "shapes", n_objects_per_category=1, n_views=2, resolution=16, seed=0)
    info = json.loads((root / "build_info.json").read_text())
    assert info["n_views"] == 2 and info["convention"] == OBJECT_CONVENTION
    for category in CATEGORIES:
        dataset = LearnitShapeNet(root, category=category, split="train", n_support=1, n_query=1)
        assert len(dataset) == 1
        item = dataset[0]
        assert item["support_rgb"].shape == (1, 3, 16, 16) and item["query_rgb"].shape == (1, 3, 16, 16)
        assert item["object_id"] == f"{category}_0000"
        assert (item["support_rgb"] < 0.9).any()  # the object is visible
        assert torch.isfinite(item["query_rays_d"]).all()


def test_the_embedded_set_builds_only_the_categories_asked_for(tmp_path, monkeypatch):
    from transinr.data import procedural_shapes

    monkeypatch.setenv("TRANSINR_DATA", str(tmp_path))
    built = []
    real_build = procedural_shapes.build_embedded_3d

    def recording_build(out_root, *args, categories, **kwargs):
        built.append(categories)
        return real_build(out_root, *args, categories=categories, **kwargs)

    monkeypatch.setattr(procedural_shapes, "build_embedded_3d", recording_build)
    size = dict(n_objects_per_category=2, n_views=2)
    root = procedural_shapes.ensure_embedded_3d(16, categories=("chair",), **size)
    assert procedural_shapes.built_categories(root) == ["chair"]
    assert (root / "chair_splits.json").is_file() and not (root / "car").exists()
    assert procedural_shapes.ensure_embedded_3d(16, categories=("chair",), **size) == root  # cached
    procedural_shapes.ensure_embedded_3d(16, categories=("lamp", "chair"), **size)
    assert built == [("chair",), ("lamp",)]
    assert procedural_shapes.built_categories(root) == ["chair", "lamp"]
    assert sorted(p.name for p in root.parent.iterdir()) == [root.name]  # no partial folder left
    dataset = LearnitShapeNet(root, category="chair", split="test", n_support=1, n_query=1)
    assert len(dataset) == 1


def test_numpy_ray_casting_without_embreex_draws_the_same_silhouette(monkeypatch):
    """Where embreex has no wheel (Linux aarch64, older macOS) trimesh's numpy ray caster
    (with rtree) renders instead: same box, same pixels up to the rim."""
    from transinr.data import mesh_views

    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    box.visual.face_colors = [200, 40, 40, 255]
    pose = pose_spherical(20.0, 30.0, 4.0)[None].numpy()
    fast = render_mesh_views(box, pose, 40.0, 24, 24, supersample=1)
    monkeypatch.setenv("TRANSINR_NO_EMBREE", "1")  # as on a machine without the embreex wheel
    monkeypatch.setattr(mesh_views, "_warned_no_embree", False)
    with pytest.warns(UserWarning, match="embreex is not available"):
        slow = render_mesh_views(box, pose, 40.0, 24, 24, supersample=1)
    from trimesh.ray import ray_triangle

    assert isinstance(mesh_views._intersector(box), ray_triangle.RayMeshIntersector)
    covered = slow[0, ..., 3] >= 128
    assert covered.sum() > 50
    differ = np.abs(fast.astype(int) - slow.astype(int)).max(-1) > 8
    assert differ.sum() <= 0.05 * covered.sum()

"""The embedded 3D set at other sizes: data.n_objects, building one split only, and the
``build-3d`` command writing the cache a config reads (never the default set's folder)."""

import json

import pytest

pytest.importorskip("trimesh")

from transinr.config import load_config  # noqa: E402
from transinr.data import procedural_shapes  # noqa: E402
from transinr.data.mesh_views import split_ids  # noqa: E402
from transinr.data.views import build_view_dataset, view_dataset_root  # noqa: E402

TINY = dict(n_objects_per_category=10, n_views=3)


def rendered(root, category="chair"):
    return sorted(p.name for p in (root / category).iterdir() if (p / "transforms.json").is_file())


def test_one_split_is_built_with_the_full_sets_split_and_the_rest_follows(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSINR_DATA", str(tmp_path))
    root = procedural_shapes.ensure_embedded_3d(16, categories=("chair",), splits=("test",), **TINY)
    full_split = split_ids(procedural_shapes.object_ids("chair", 10), seed=0)
    assert rendered(root) == full_split["test"]
    assert json.loads((root / "chair_splits.json").read_text()) == full_split
    assert procedural_shapes.built_categories(root) == []  # not complete
    assert procedural_shapes.built_categories(root, ["test"]) == ["chair"]
    test_chair = root / "chair" / full_split["test"][0] / "transforms.json"
    first_render = test_chair.stat().st_mtime_ns

    assert procedural_shapes.ensure_embedded_3d(16, categories=("chair",), splits=("test",), **TINY) == root
    procedural_shapes.ensure_embedded_3d(16, categories=("chair",), **TINY)  # every split now
    assert rendered(root) == procedural_shapes.object_ids("chair", 10)
    assert procedural_shapes.built_categories(root) == ["chair"]
    assert test_chair.stat().st_mtime_ns == first_render  # kept, not rendered again
    assert "partial" not in json.loads((root / "build_info.json").read_text())
    assert sorted(p.name for p in root.parent.iterdir()) == [root.name]


def test_n_objects_reads_its_own_cache_and_scoring_builds_only_the_test_chairs(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSINR_DATA", str(tmp_path))
    config = load_config("shapes3d_chairs_1view", ["data.n_objects=10", "data.resolution=16"])
    test_set = build_view_dataset(config, "test")
    root = view_dataset_root(config, "test")
    assert root.name == "64px-10objects-50views"  # built at 64 px, read at 16
    assert len(test_set) == 1 and rendered(root) == split_ids(procedural_shapes.object_ids("chair", 10))["test"]
    assert not (tmp_path / "shapes3d" / "64px").exists()  # the default 100-chair set is untouched


def test_build_3d_without_out_writes_the_cache_of_its_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRANSINR_DATA", str(tmp_path))
    argv = ["--objects", "4", "--views", "2", "--resolution", "16", "--categories", "chair"]
    assert procedural_shapes.cli_main(argv + ["--splits", "test"]) == 0
    root = tmp_path / "shapes3d" / "16px-4objects-2views"
    assert rendered(root) == split_ids(procedural_shapes.object_ids("chair", 4))["test"]
    assert not (tmp_path / "shapes3d" / "16px").exists()
    with pytest.raises(SystemExit):
        procedural_shapes.cli_main(argv + ["--seed", "3"])  # would pass for the standard build
    assert "needs --out" in capsys.readouterr().err

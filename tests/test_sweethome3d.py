"""The Sweet Home 3D source of build-3d, on a tiny furniture archive the tests write."""

import json
import warnings
import zipfile

import numpy as np
import pytest

pytest.importorskip("trimesh")

from transinr.data.learnit import LearnitShapeNet  # noqa: E402
from transinr.data.mesh_views import hash_split_ids  # noqa: E402
from transinr.data.procedural_shapes import cli_main  # noqa: E402
from transinr.data.sweethome3d import (  # noqa: E402
    SPLIT_FRACTIONS, kit_category, load_catalog_model, parse_properties, read_catalog)


def box_obj(boxes) -> str:
    """OBJ text of axis-aligned boxes ``(min corner, max corner, material)``."""
    lines, offset = ["mtllib chair.mtl"], 0
    for low, high, material in boxes:
        corners = [(x, y, z) for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
        lines.append(f"usemtl {material}")
        lines += [f"v {x} {y} {z}" for x, y, z in corners]
        quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        for a, b, c, d in quads:
            lines.append(f"f {offset + a + 1} {offset + b + 1} {offset + c + 1}")
            lines.append(f"f {offset + a + 1} {offset + c + 1} {offset + d + 1}")
        offset += 8
    return "\n".join(lines) + "\n"


# A chair as Sweet Home 3D stores it: y up, front towards +z, so the backrest is at -z (cm).
CHAIR = [((-20, 0, -20), (20, 45, 20), "seat"), ((-20, 45, -20), (20, 90, -15), "back")]
MTL = "newmtl seat\nKd 0.8 0.1 0.1\nnewmtl back\nKd 0.1 0.1 0.8\n"


def lying_down(boxes):
    """The same chair stored z up (y → z, z → -y): a ``modelRotation`` turns it back."""
    turned = []
    for low, high, material in boxes:
        a = (low[0], -low[2], low[1])
        b = (high[0], -high[2], high[1])
        turned.append((tuple(map(min, a, b)), tuple(map(max, a, b)), material))
    return turned


CATALOG = """# a tiny catalogue
id=Test#Pack
license=Creative Commons Attribution 3.0
id#1=Test#plainChair
name#1=Chair
tags#1=Seat
category#1=Living room
creator#1=Ada Example
model#1=/test/plainChair/chair.obj
width#1=40
depth#1=40
height#1=90
id#2=Test#lyingChair
name#2=Caf\\u00e9 chair
tags#2=Seat, \\
  Outdoor
category#2=Exterior
creator#2=Bo Example
model#2=/test/lyingChair/chair.obj
modelRotation#2=1 0 0 0 0 1 0 -1 0
width#2=40
depth#2=40
height#2=90
id#3=Test#brokenStool
name#3=Stool
tags#3=
category#3=Kitchen
creator#3=Cy Example
model#3=/test/brokenStool/stool.obj
width#3=30
depth#3=30
height#3=60
id#4=Test#door
name#4=Door
tags#4=
category#4=Doors and windows
creator#4=Di Example
model#4=/test/door/door.obj
width#4=90
depth#4=10
height#4=200
"""


@pytest.fixture
def furniture_dir(tmp_path):
    folder = tmp_path / "furniture"
    folder.mkdir()
    with zipfile.ZipFile(folder / "Test.sh3f", "w") as z:
        z.writestr("LICENSE.TXT", "CC BY 3.0\n")
        z.writestr("PluginFurnitureCatalog.properties", CATALOG.encode("latin-1"))
        z.writestr("test/plainChair/chair.obj", box_obj(CHAIR))
        z.writestr("test/plainChair/chair.mtl", MTL)
        z.writestr("test/plainChair/LICENSE.txt", "Chair by Ada Example, CC BY 3.0\n")
        z.writestr("test/lyingChair/chair.obj", box_obj(lying_down(CHAIR)))
        z.writestr("test/lyingChair/chair.mtl", MTL)
        z.writestr("test/brokenStool/stool.obj", "this is not an OBJ file\n")
        z.writestr("test/door/door.obj", box_obj([((0, 0, 0), (90, 200, 10), "seat")]))
    return folder


def test_properties_parser_handles_escapes_and_continuations():
    props = parse_properties("# c\n! c\na=1\nb = caf\\u00e9\nc=x, \\\n   y\nd:z\n")
    assert props == {"a": "1", "b": "café", "c": "x, y", "d": "z"}


def test_catalogue_entries_and_categories(furniture_dir):
    with zipfile.ZipFile(furniture_dir / "Test.sh3f") as z:
        models = read_catalog(z, "Test.sh3f")
    assert [m.name for m in models] == ["Chair", "Café chair", "Stool", "Door"]
    assert models[1].tags == ("Seat", "Outdoor") and models[1].rotation == (1, 0, 0, 0, 0, 1, 0, -1, 0)
    assert models[0].licence == "Creative Commons Attribution 3.0" and models[0].creator == "Ada Example"
    assert [kit_category(m) for m in models] == ["chair", "chair", "chair", None]


@pytest.mark.parametrize("index", [0, 1])
def test_models_are_upright_facing_plus_y_in_the_unit_sphere(furniture_dir, index):
    with zipfile.ZipFile(furniture_dir / "Test.sh3f") as z:
        model = read_catalog(z, "Test.sh3f")[index]
        vertices, faces, albedo = load_catalog_model(z, model)
    assert np.linalg.norm(vertices, axis=1).max() == pytest.approx(1.0)
    height = np.ptp(vertices[:, 2])
    assert height > np.ptp(vertices[:, 0]) and height > np.ptp(vertices[:, 1])  # upright: tall along z
    back = vertices[:, 2] > vertices[:, 2].min() + 0.75 * height  # the backrest
    assert vertices[back, 1].mean() < vertices[:, 1].mean() - 0.1  # behind the seat: the front is +y
    assert np.allclose(albedo.max(axis=0), [0.8, 0.1, 0.8], atol=0.01)  # both MTL colours read


def test_build_sweethome3d_writes_views_splits_and_credits(furniture_dir, tmp_path):
    out = tmp_path / "views"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli_main(["--source", "sweethome3d", "--furniture-dir", str(furniture_dir), "--out", str(out),
                  "--views", "4", "--resolution", "16"])
    messages = [str(w.message) for w in caught]
    assert any("skipped 1" in m and "test/brokenStool/stool.obj" in m for m in messages)
    splits = json.loads((out / "chair_splits.json").read_text())
    assert sorted(sum(splits.values(), [])) == ["test_lyingchair", "test_plainchair"]
    assert splits == hash_split_ids(["test_lyingchair", "test_plainchair"], SPLIT_FRACTIONS)
    record = json.loads((out / "chair" / "test_plainchair" / "credits.json").read_text())
    assert record["creator"] == "Ada Example" and record["licence"].startswith("Creative Commons Attribution")
    assert (out / "chair" / "test_plainchair" / "LICENSE.txt").read_text().startswith("Chair by Ada")
    assert "Bo Example" in (out / "CREDITS.md").read_text()
    assert not (out / "furniture").exists() and not (out / "chair" / "test_door").exists()
    split = next(s for s in ("train", "val", "test") if splits[s])
    item = LearnitShapeNet(out, category="chair", split=split, n_support=1, n_query=1)[0]
    assert item["support_rgb"].shape == (1, 3, 16, 16) and (item["support_rgb"] < 0.9).any()


def test_missing_catalogues_name_the_install_step(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--source", "sweethome3d", "--furniture-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "apt-get install" in capsys.readouterr().err


def test_hash_split_keeps_each_object_in_its_split():
    ids = [f"model_{k}" for k in range(200)]
    full = hash_split_ids(ids)
    fewer = hash_split_ids(ids[::2])
    for split in ("train", "val", "test"):
        assert set(fewer[split]) == set(full[split]) & set(ids[::2])
    assert 8 <= len(full["test"]) <= 35 and 8 <= len(full["val"]) <= 35


def test_a_notebook_gets_real_chairs_built_on_first_use_or_none_without_the_package(furniture_dir, tmp_path,
                                                                                  monkeypatch):
    from transinr import nvs_widgets
    from transinr.config import load_config
    from transinr.data import sweethome3d

    monkeypatch.setenv("TRANSINR_DATA", str(tmp_path / "cache"))
    config = load_config("shapes3d_chairs_1view", ["data.resolution=16"])
    monkeypatch.setattr(sweethome3d, "DEFAULT_FURNITURE_DIR", tmp_path / "no_package")
    assert nvs_widgets.real_objects(config, smoke=True) is None
    assert "apt-get install -y sweethome3d-furniture" in nvs_widgets.REAL_SET_HINT
    monkeypatch.setattr(sweethome3d, "DEFAULT_FURNITURE_DIR", furniture_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the archive's broken stool, tested above
        real = nvs_widgets.real_objects(config, smoke=True)
    assert (tmp_path / "cache" / "sweethome3d" / "smoke_16px" / "build_info.json").exists()
    item = real[0]  # every object of the set, whatever its split: no shipped model trained on one
    assert len(real) == 1 and item["support_rgb"].shape == (1, 3, 16, 16) and (item["support_rgb"] < 0.9).any()

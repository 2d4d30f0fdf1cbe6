"""Real furniture: Sweet Home 3D's catalogues as posed views in the learnit layout.

Debian's ``sweethome3d-furniture`` package (``apt-get install sweethome3d-furniture``)
puts five zip archives (``*.sh3f``) in ``/usr/share/sweethome3d/furniture/``: 820 OBJ
models with their MTL files and textures, under CC0 (Blend Swap CC-0) or CC BY 3.0
(the others). Each archive lists its models in ``PluginFurnitureCatalog.properties``
(a Java properties file): ``id#N``, ``name#N``, ``tags#N``, ``category#N`` (a room:
*Living room*, *Lights*, *Vehicles* …), ``creator#N``, ``model#N`` (the OBJ's path in the
archive), ``width#N`` / ``depth#N`` / ``height#N`` (cm), optionally ``modelRotation#N``
(a row-major 3×3 matrix that turns a model stored lying down upright); the archive's
``license=`` line and ``LICENSE.TXT`` give the licence, and most model folders hold a
licence file naming the author.

:func:`build_sweethome3d` reads every catalogue, sorts the models into the kit's
categories (:func:`kit_category`), and renders each the way Sweet Home 3D shows it —
``modelRotation`` applied, the bounding box stretched to the catalogue's width × height ×
depth — then puts it in the kit's convention (z up, front +y, unit sphere; Sweet Home
3D models are y up and face +z) with the renderer every 3D source shares
(:mod:`transinr.data.mesh_views`). Splits are by a stable hash of the object id, so an
object keeps its split whatever else fails to load. Next to each object's views,
``credits.json`` records its catalogue entry, creator and licence, and the model's own
licence files are copied; ``<out>/CREDITS.md`` lists every object with its author and
licence (the CC BY ones must be credited when renders are published).
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .mesh_views import (
    BLENDER_CAMERA_ANGLE_X,
    OBJECT_CONVENTION,
    _already_rendered,
    load_mesh,
    normalise_to_unit_sphere,
    write_object_views,
    write_split_file,
)

DEFAULT_FURNITURE_DIR = Path("/usr/share/sweethome3d/furniture")
# Train / val / test shares of each category, split by a hash of the object id. The set is
# small (96 seating models) and its test split is the real-object row of every 3D table, so
# the test share is 30 %, not the 10 % of the procedural sets: ~29 test objects, not 8.
SPLIT_FRACTIONS = (0.6, 0.1, 0.3)
INSTALL_HINT = (
    "Install Debian's furniture catalogues with: sudo apt-get update && sudo apt-get install -y "
    "sweethome3d-furniture (elsewhere: apt-get download sweethome3d-furniture && dpkg -x "
    "sweethome3d-furniture_*.deb sh3d, then --furniture-dir sh3d/usr/share/sweethome3d/furniture)"
)
CATEGORIES = ("chair", "lamp", "car", "furniture")
# Catalogue categories that are not objects on their own (openings, people, stairs).
NOT_FURNITURE = {"Doors and windows", "Characters", "Staircases"}
SEATING_WORDS = {"chair", "chairs", "armchair", "seat", "seats", "stool", "sofa", "couch", "bench", "ottoman",
                 "puff", "lounge"}


@dataclass(frozen=True)
class CatalogModel:
    """One furniture entry of a ``.sh3f`` catalogue."""

    pack: str  # archive file name, e.g. "Scopia.sh3f"
    catalog_id: str  # e.g. "Scopia#chair"
    name: str
    tags: tuple[str, ...]
    catalog_category: str
    creator: str
    licence: str  # the archive's licence line
    model: str  # path of the OBJ inside the archive, without a leading "/"
    size_cm: tuple[float, float, float]  # width (x), height (y), depth (z)
    rotation: tuple[float, ...] | None  # row-major 3×3, or None


# -- catalogues -----------------------------------------------------------------------


def parse_properties(text: str) -> dict[str, str]:
    """A Java ``.properties`` file → dict: ``#``/``!`` comments, ``=`` or ``:`` separators,
    backslash line continuations and ``\\uXXXX`` escapes."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = pending + (raw.lstrip() if pending else raw)
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:  # an odd number of trailing backslashes continues the line
            pending = line[:-1]
            continue
        pending = ""
        lines.append(line)
    props = {}
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped[0] in "#!":
            continue
        match = re.match(r"\s*((?:\\.|[^=:\s\\])+)\s*[=:\s]\s*(.*)$", stripped)
        key, value = (match.group(1), match.group(2)) if match else (stripped, "")
        props[_unescape(key)] = _unescape(value)
    return props


def _unescape(value: str) -> str:
    value = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), value)
    return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value)


def read_catalog(archive: zipfile.ZipFile, pack: str) -> list[CatalogModel]:
    """The entries of one opened ``.sh3f`` archive (ValueError if it has no catalogue)."""
    try:
        text = archive.read("PluginFurnitureCatalog.properties").decode("latin-1")
    except KeyError:
        raise ValueError(f"{pack}: no PluginFurnitureCatalog.properties (not a Sweet Home 3D furniture library)") from None
    props = parse_properties(text)
    licence = props.get("license", "licence not stated")
    numbers = sorted({int(key.split("#")[1]) for key in props if re.fullmatch(r"model#\d+", key)})
    models = []
    for n in numbers:
        def get(key, default=""):
            return props.get(f"{key}#{n}", default).strip()

        try:
            size = (float(get("width", "0")), float(get("height", "0")), float(get("depth", "0")))
        except ValueError:
            size = (0.0, 0.0, 0.0)
        rotation = get("modelRotation")
        rotation_values = tuple(float(x) for x in rotation.split()) if rotation else None
        if rotation_values is not None and len(rotation_values) != 9:
            rotation_values = None
        models.append(CatalogModel(
            pack=pack, catalog_id=get("id") or f"{pack}#{n}", name=get("name"),
            tags=tuple(t.strip() for t in get("tags").split(",") if t.strip()),
            catalog_category=get("category"), creator=get("creator") or "unknown", licence=licence,
            model=get("model").lstrip("/"), size_cm=size, rotation=rotation_values))
    return models


def kit_category(model: CatalogModel) -> str | None:
    """Which of :data:`CATEGORIES` a catalogue entry goes to (None: left out).

    chair: seating — a word of the name or a tag among :data:`SEATING_WORDS` (chairs,
    armchairs, stools, sofas, benches …), vehicles and work benches excepted; lamp: the
    *Lights* category; car: *Vehicles*; furniture: every other entry except doors and
    windows, people and staircases.
    """
    words = set(re.findall(r"[a-z]+", " ".join((model.name, *model.tags)).lower()))
    category = model.catalog_category
    if category in NOT_FURNITURE:
        return None
    if category == "Vehicles":
        return "car"
    if words & SEATING_WORDS and "workbench" not in words:
        return "chair"
    if category == "Lights":
        return "lamp"
    return "furniture"


def object_id(model: CatalogModel) -> str:
    """File-system-safe, unique id from the catalogue id: "Blend Swap CC-0#armchair" →
    "blend_swap_cc-0_armchair"."""
    return re.sub(r"[^a-z0-9.-]+", "_", model.catalog_id.lower()).strip("_")


# -- one model --------------------------------------------------------------------------


def _model_folder(model: CatalogModel) -> str:
    return model.model.rsplit("/", 1)[0] + "/" if "/" in model.model else ""


def licence_files(archive: zipfile.ZipFile, model: CatalogModel) -> list[str]:
    """Names in the archive of the licence files stored beside a model's OBJ."""
    folder = _model_folder(model)
    return [name for name in archive.namelist()
            if name.startswith(folder) and "/" not in name[len(folder):] and "licen" in name.lower()
            and not name.endswith("/")]


def load_catalog_model(archive: zipfile.ZipFile, model: CatalogModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A catalogue model as Sweet Home 3D shows it, in the kit's convention.

    Returns vertices ``(N, 3)`` (z up, front +y, in the unit sphere), faces ``(F, 3)``,
    per-face albedo ``(F, 3)``. Raises on a model that cannot be read.
    """
    folder = _model_folder(model)
    members = [name for name in archive.namelist() if name.startswith(folder) and not name.endswith("/")]
    if model.model not in members:
        raise ValueError(f"{model.model} is not in the archive")
    with tempfile.TemporaryDirectory(prefix="sh3d_") as tmp:
        archive.extractall(tmp, members)  # the OBJ needs its MTL and textures beside it
        vertices, faces, albedo = load_mesh(Path(tmp) / model.model)
    if model.rotation is not None:  # column vectors: v' = M v
        vertices = vertices @ np.asarray(model.rotation, dtype=np.float64).reshape(3, 3).T
    # Sweet Home 3D stretches a model's bounding box to the catalogue's size.
    extent = vertices.max(axis=0) - vertices.min(axis=0)
    target = np.asarray(model.size_cm, dtype=np.float64)
    if (target > 0).all() and (extent > 1e-9).all():
        vertices = vertices * (target / extent)
    return normalise_to_unit_sphere(vertices, up_axis="y"), faces, albedo


# -- the dataset --------------------------------------------------------------------------


def find_archives(furniture_dir) -> list[Path]:
    furniture_dir = Path(furniture_dir).expanduser()
    archives = sorted(furniture_dir.glob("*.sh3f")) if furniture_dir.is_dir() else []
    if not archives:
        raise FileNotFoundError(f"No Sweet Home 3D furniture archives (*.sh3f) in {furniture_dir}. {INSTALL_HINT}")
    return archives


def default_sweethome3d_root(resolution: int = 64) -> Path:
    from .procedural_shapes import data_root

    return data_root() / "sweethome3d" / f"{resolution}px"


def build_sweethome3d(
    out_root=None,
    furniture_dir=DEFAULT_FURNITURE_DIR,
    categories=("chair",),
    n_views: int = 50,
    resolution: int = 64,
    seed: int = 0,
    supersample: int = 2,
    views: str = "sphere",
    max_per_category: int | None = None,
    fractions=None,
) -> Path:
    """Render the catalogues' models of ``categories`` into the learnit layout.

    Objects already rendered with the same settings are kept (a build resumes).
    Models that cannot be read are skipped with one warning naming each of them.
    ``max_per_category`` keeps the first models of each category in catalogue order
    (for small trial builds). ``fractions``: train / val / test shares (default
    :data:`SPLIT_FRACTIONS`). Writes ``build_info.json`` last; returns the root.
    """
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown Sweet Home 3D categories {unknown}, expected some of {list(CATEGORIES)}")
    out_root = Path(out_root).expanduser() if out_root is not None else default_sweethome3d_root(resolution)
    start = time.time()
    settings = dict(n_views=n_views, resolution=resolution, seed=seed, views=views, up_axis="y",
                    supersample=supersample, convention=OBJECT_CONVENTION)
    archives = find_archives(furniture_dir)
    chosen: list[tuple[Path, str, CatalogModel]] = []
    counts = {category: 0 for category in categories}
    for path in archives:
        with zipfile.ZipFile(path) as archive:
            for model in read_catalog(archive, path.name):
                category = kit_category(model)
                if category in counts and (max_per_category is None or counts[category] < max_per_category):
                    chosen.append((path, category, model))
                    counts[category] += 1
    done: dict[str, list[str]] = {category: [] for category in categories}
    credits: list[dict] = []
    failed: list[str] = []
    progress = tqdm(total=len(chosen), desc="rendering Sweet Home 3D models", unit="model", disable=None)
    for path in archives:
        with zipfile.ZipFile(path) as archive:
            for _, category, model in (c for c in chosen if c[0] == path):
                progress.update()
                oid = object_id(model)
                object_dir = out_root / category / oid
                record = dict(object_id=oid, category=category, **asdict(model))
                record["licence_files"] = [Path(n).name for n in licence_files(archive, model)]
                if not _already_rendered(object_dir, settings, BLENDER_CAMERA_ANGLE_X, 4.0):
                    try:
                        arrays = load_catalog_model(archive, model)
                    except Exception as err:  # any unreadable model: skip it, name it at the end
                        failed.append(f"{path.name}:{model.model} ({type(err).__name__}: {str(err)[:60]})")
                        continue
                    write_object_views(arrays, object_dir, oid, n_views, resolution, seed, BLENDER_CAMERA_ANGLE_X,
                                       4.0, views, supersample,
                                       extra={"source": f"{path.name}:{model.model}", "render_settings": settings})
                    for name in licence_files(archive, model):
                        (object_dir / Path(name).name).write_bytes(archive.read(name))
                    (object_dir / "credits.json").write_text(json.dumps(record, indent=1))
                done[category].append(oid)
                credits.append(record)
    progress.close()
    if failed:
        warnings.warn(f"skipped {len(failed)} Sweet Home 3D models that could not be read: " + "; ".join(failed),
                      stacklevel=2)
    for category, ids in done.items():
        write_split_file(out_root, category, ids, seed, fractions or SPLIT_FRACTIONS, by_hash=True)
    write_credits(out_root, credits)
    info = dict(source="sweethome3d", furniture_dir=str(furniture_dir), categories=list(categories),
                objects={c: len(ids) for c, ids in done.items()}, skipped=failed, **settings,
                build_seconds=round(time.time() - start, 1))
    (out_root / "build_info.json").write_text(json.dumps(info, indent=1))
    return out_root


def write_credits(out_root: Path, credits: list[dict]) -> Path:
    """``credits.json`` (every object's catalogue record) and ``CREDITS.md`` (readable)."""
    out_root.mkdir(parents=True, exist_ok=True)
    credits = sorted(credits, key=lambda r: (r["category"], r["object_id"]))
    (out_root / "credits.json").write_text(json.dumps(credits, indent=1))
    lines = ["# Credits", "",
             "Views rendered from Sweet Home 3D furniture catalogues (Debian package sweethome3d-furniture).",
             "Models under a Creative Commons Attribution licence must be credited to their creator.", "",
             "| category | object | model | creator | licence |", "|---|---|---|---|---|"]
    lines += [f"| {r['category']} | {r['object_id']} | {r['name']} ({r['pack']}) | {r['creator']} | {r['licence']} |"
              for r in credits]
    path = out_root / "CREDITS.md"
    path.write_text("\n".join(lines) + "\n")
    return path

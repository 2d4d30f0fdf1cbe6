"""Procedural chairs, cars and lamps: the embedded 3D dataset (no download).

Each object is a union of trimesh primitives (boxes, cylinders, spheres, capsules,
frusta) whose proportions, part styles and colours are drawn from a seeded numpy
generator, so object ``k`` of a category is the same on every machine. Shapes are
built z-up in metres and rendered with :mod:`transinr.data.mesh_views` into the
learnit layout (``<root>/<category>_splits.json``, ``<root>/<category>/<id>/``),
which :class:`transinr.data.learnit.LearnitShapeNet` reads.

Default location: ``$TRANSINR_DATA/shapes3d/<resolution>px`` with ``TRANSINR_DATA``
defaulting to ``~/.cache/transinr``.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from transinr.data.mesh_views import (
    BLENDER_CAMERA_ANGLE_X,
    OBJECT_CONVENTION,
    _trimesh,
    normalise_to_unit_sphere,
    scene_to_arrays,
    split_ids,
    write_object_views,
    write_split_file,
)

CATEGORIES = ("chair", "car", "lamp")
DEFAULT_OBJECTS_PER_CATEGORY = 100
DEFAULT_VIEWS = 50


# -- colours and primitives ---------------------------------------------------------


def random_colour(rng: np.random.Generator, saturation=(0.35, 0.9), value=(0.45, 0.95)) -> np.ndarray:
    """An RGBA uint8 colour with a uniform hue."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*saturation), rng.uniform(*value))
    return np.array([*(round(255 * c) for c in rgb), 255], dtype=np.uint8)


def material_colour(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Colours of typical materials: 'wood', 'metal', 'dark', 'glass', 'light'."""
    ranges = {
        "wood": ((0.05, 0.11), (0.45, 0.75), (0.35, 0.75)),
        "metal": ((0.0, 1.0), (0.0, 0.08), (0.55, 0.85)),
        "dark": ((0.0, 1.0), (0.0, 0.2), (0.08, 0.2)),
        "glass": ((0.52, 0.62), (0.2, 0.45), (0.2, 0.4)),
        "light": ((0.1, 0.17), (0.1, 0.4), (0.9, 1.0)),
    }[kind]
    h, s, v = (rng.uniform(*r) for r in ranges)
    return np.array([*(round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v)), 255], dtype=np.uint8)


def _coloured(mesh, colour):
    mesh.visual.face_colors = colour
    return mesh


def box(extents, centre, colour):
    trimesh = _trimesh()
    transform = np.eye(4)
    transform[:3, 3] = centre
    return _coloured(trimesh.creation.box(extents=extents, transform=transform), colour)


def rod(start, end, radius, colour, sections=16):
    """A cylinder between two points."""
    trimesh = _trimesh()
    return _coloured(trimesh.creation.cylinder(radius=radius, segment=[start, end], sections=sections), colour)


def sphere(centre, radius, colour, subdivisions=2):
    trimesh = _trimesh()
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    mesh.apply_translation(centre)
    return _coloured(mesh, colour)


def capsule(start, end, radius, colour):
    """A capsule between two points (its axis)."""
    trimesh = _trimesh()
    start, end = np.asarray(start, float), np.asarray(end, float)
    axis = end - start
    length = float(np.linalg.norm(axis))
    mesh = trimesh.creation.capsule(height=length, radius=radius, count=[12, 12])
    # trimesh's capsule is centred on the origin along +z; turn +z onto the axis.
    transform = trimesh.geometry.align_vectors([0, 0, 1], axis / length)
    transform[:3, 3] = 0.5 * (start + end)
    mesh.apply_transform(transform)
    return _coloured(mesh, colour)


def frustum(bottom_centre, bottom_radius, top_radius, height, colour, sections=24):
    """A closed truncated cone along +z (a cone when one radius is ~0)."""
    trimesh = _trimesh()
    angles = np.linspace(0.0, 2 * np.pi, sections, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1)
    points = np.concatenate([ring * max(bottom_radius, 1e-3), ring * max(top_radius, 1e-3) + [0, 0, height]])
    mesh = trimesh.convex.convex_hull(points + np.asarray(bottom_centre, float))
    return _coloured(mesh, colour)


def prism(bottom_rect, top_rect, z_bottom, z_top, colour):
    """Convex hull of two axis-aligned rectangles ``(x0, x1, y0, y1)`` at two heights."""
    trimesh = _trimesh()
    corners = []
    for (x0, x1, y0, y1), z in ((bottom_rect, z_bottom), (top_rect, z_top)):
        corners += [(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)]
    return _coloured(trimesh.convex.convex_hull(np.asarray(corners, float)), colour)


# -- categories ---------------------------------------------------------------------


def make_chair(rng: np.random.Generator) -> list:
    width, depth = rng.uniform(0.4, 0.6), rng.uniform(0.38, 0.6)
    seat_height, seat_thickness = rng.uniform(0.35, 0.5), rng.uniform(0.03, 0.09)
    seat_colour = random_colour(rng)
    frame_colour = material_colour(rng, rng.choice(["wood", "metal", "dark"])) if rng.uniform() < 0.7 else seat_colour
    parts = [box((width, depth, seat_thickness), (0, 0, seat_height - seat_thickness / 2), seat_colour)]

    leg_style = rng.choice(["round", "square", "splayed"])
    leg_size = rng.uniform(0.015, 0.035)
    inset = rng.uniform(0.02, 0.06)
    leg_top = seat_height - seat_thickness
    for sx in (-1, 1):
        for sy in (-1, 1):
            top = np.array([sx * (width / 2 - inset), sy * (depth / 2 - inset), leg_top])
            if leg_style == "square":
                parts.append(box((2 * leg_size, 2 * leg_size, leg_top), (top[0], top[1], leg_top / 2), frame_colour))
            else:
                splay = rng.uniform(0.03, 0.08) if leg_style == "splayed" else 0.0
                bottom = top + np.array([sx * splay, sy * splay, -leg_top])
                parts.append(rod(bottom, top, leg_size, frame_colour))

    back_height = rng.uniform(0.3, 0.6)
    back_thickness = rng.uniform(0.025, 0.06)
    back_y = -depth / 2 + back_thickness / 2
    back_style = rng.choice(["panel", "slats", "frame"])
    back_colour = seat_colour if rng.uniform() < 0.7 else random_colour(rng)
    z0 = seat_height
    if back_style == "panel":
        parts.append(box((width, back_thickness, back_height), (0, back_y, z0 + back_height / 2), back_colour))
    else:
        post = rng.uniform(0.02, 0.035)
        for sx in (-1, 1):
            parts.append(box((2 * post, back_thickness, back_height), (sx * (width / 2 - post), back_y, z0 + back_height / 2), frame_colour))
        rail = rng.uniform(0.05, 0.12)
        parts.append(box((width, back_thickness, rail), (0, back_y, z0 + back_height - rail / 2), back_colour))
        if back_style == "slats":
            n_slats = int(rng.integers(2, 6))
            for x in np.linspace(-width / 2, width / 2, n_slats + 2)[1:-1]:
                parts.append(box((rng.uniform(0.02, 0.05), back_thickness * 0.8, back_height - rail), (x, back_y, z0 + (back_height - rail) / 2), back_colour))
        else:
            parts.append(box((width, back_thickness, rail * 0.7), (0, back_y, z0 + back_height * 0.45), back_colour))

    if rng.uniform() < 0.4:  # armrests on front supports
        arm_height = rng.uniform(0.18, 0.26)
        arm_width = rng.uniform(0.04, 0.07)
        for sx in (-1, 1):
            x = sx * (width / 2 - arm_width / 2)
            parts.append(box((arm_width, depth * 0.9, 0.03), (x, 0, z0 + arm_height), frame_colour))
            parts.append(rod((x, depth * 0.35, z0), (x, depth * 0.35, z0 + arm_height), 0.015, frame_colour))
    return parts


def make_car(rng: np.random.Generator) -> list:
    length, width = rng.uniform(3.4, 4.8), rng.uniform(1.6, 1.95)
    wheel_radius, wheel_width = rng.uniform(0.28, 0.4), rng.uniform(0.18, 0.3)
    clearance = rng.uniform(0.12, 0.3)
    body_height = rng.uniform(0.45, 0.8)
    body_colour = random_colour(rng, saturation=(0.4, 1.0))
    glass = material_colour(rng, "glass")
    body_bottom, body_top = clearance + 0.1, clearance + 0.1 + body_height
    parts = []
    if rng.uniform() < 0.5:  # wedge nose: body narrower on top than at the bottom
        nose = rng.uniform(0.1, 0.35)
        parts.append(prism((-length / 2, length / 2, -width / 2, width / 2),
                           (-length / 2, length / 2 - nose, -width / 2 * 0.95, width / 2 * 0.95),
                           body_bottom, body_top, body_colour))
    else:
        parts.append(box((length, width, body_height), (0, 0, (body_bottom + body_top) / 2), body_colour))

    cabin_length = rng.uniform(0.4, 0.6) * length
    cabin_height = rng.uniform(0.35, 0.6)
    cabin_shift = rng.uniform(-0.15, 0.05) * length
    slope_front, slope_back = rng.uniform(0.1, 0.5), rng.uniform(0.0, 0.4)
    cabin_width = width * rng.uniform(0.82, 0.95)
    x0, x1 = cabin_shift - cabin_length / 2, cabin_shift + cabin_length / 2
    cabin_colour = glass if rng.uniform() < 0.7 else body_colour
    parts.append(prism((x0, x1, -cabin_width / 2, cabin_width / 2),
                       (x0 + slope_back * cabin_length * 0.5, x1 - slope_front * cabin_length * 0.5,
                        -cabin_width / 2 * 0.92, cabin_width / 2 * 0.92),
                       body_top, body_top + cabin_height, cabin_colour))

    tyre = material_colour(rng, "dark")
    axle = length / 2 - rng.uniform(0.55, 0.9)
    for sx in (-1, 1):
        for sy in (-1, 1):
            y_out = sy * (width / 2 - wheel_width / 2 + 0.03)
            start = (sx * axle, y_out - wheel_width / 2, wheel_radius)
            end = (sx * axle, y_out + wheel_width / 2, wheel_radius)
            parts.append(rod(start, end, wheel_radius, tyre, sections=20))
    light_colour = material_colour(rng, "light")
    for sy in (-1, 1):
        parts.append(sphere((length / 2 - 0.02, sy * width * 0.33, body_top - 0.12), 0.09, light_colour, subdivisions=1))
    if rng.uniform() < 0.3:  # rear spoiler
        parts.append(box((0.25, width * 0.9, 0.05), (-length / 2 + 0.15, 0, body_top + 0.2), body_colour))
        for sy in (-1, 1):
            parts.append(box((0.08, 0.06, 0.2), (-length / 2 + 0.15, sy * width * 0.3, body_top + 0.1), body_colour))
    return parts


def make_lamp(rng: np.random.Generator) -> list:
    metal = material_colour(rng, rng.choice(["metal", "dark", "wood"]))
    shade_colour = random_colour(rng, saturation=(0.1, 0.7), value=(0.6, 1.0))
    floor_lamp = rng.uniform() < 0.5
    height = rng.uniform(1.2, 1.8) if floor_lamp else rng.uniform(0.35, 0.7)
    base_radius = rng.uniform(0.12, 0.22) if floor_lamp else rng.uniform(0.07, 0.14)
    base_height = rng.uniform(0.02, 0.06)
    base_style = rng.choice(["disc", "square", "dome"])
    if base_style == "disc":
        parts = [rod((0, 0, 0), (0, 0, base_height), base_radius, metal, sections=24)]
    elif base_style == "square":
        parts = [box((2 * base_radius * 0.85, 2 * base_radius * 0.85, base_height), (0, 0, base_height / 2), metal)]
    else:
        parts = [frustum((0, 0, 0), base_radius, base_radius * 0.3, base_height * 2.5, metal)]
    pole_radius = rng.uniform(0.008, 0.02) * (1.5 if floor_lamp else 1.0)

    bent = (not floor_lamp) and rng.uniform() < 0.5
    if bent:  # desk lamp: upright arm, then a forearm reaching out
        elbow = np.array([rng.uniform(-0.1, 0.05), 0, height * rng.uniform(0.5, 0.8)])
        tip = elbow + np.array([rng.uniform(0.2, 0.4), 0, height * rng.uniform(0.1, 0.3)])
        parts.append(capsule((0, 0, base_height), elbow, pole_radius, metal))
        parts.append(capsule(elbow, tip, pole_radius, metal))
        shade_top = tip
    else:
        shade_top = np.array([0, 0, height])
        parts.append(rod((0, 0, 0), shade_top, pole_radius, metal))

    shade_height = rng.uniform(0.15, 0.3) * (1.5 if floor_lamp else 1.0)
    shade_style = rng.choice(["cone", "drum", "globe", "dome"])
    bottom_radius = rng.uniform(0.12, 0.25) * (1.4 if floor_lamp else 1.0)
    bulb = material_colour(rng, "light")
    if shade_style == "globe":
        radius = shade_height * 0.6
        parts.append(sphere(shade_top + [0, 0, radius * 0.6], radius, shade_colour))
    else:
        top_radius = {"cone": bottom_radius * rng.uniform(0.35, 0.7), "drum": bottom_radius,
                      "dome": bottom_radius * rng.uniform(0.05, 0.2)}[shade_style]
        bottom = shade_top - [0, 0, shade_height * 0.55]
        parts.append(frustum(bottom, bottom_radius, top_radius, shade_height, shade_colour))
        parts.append(sphere(bottom - [0, 0, 0.02], min(0.05, bottom_radius * 0.4), bulb, subdivisions=1))
    return parts


BUILDERS = {"chair": make_chair, "car": make_car, "lamp": make_lamp}
# The builders draw a chair facing +y (backrest at -y) but a car's nose and a desk lamp's
# arm along +x; a quarter turn about z brings those to the kit's convention, front +y.
FRONT_TURN_DEGREES = {"chair": 0.0, "car": 90.0, "lamp": 90.0}


def make_shape(category: str, rng: np.random.Generator):
    """One random object of ``category`` as a single coloured ``trimesh.Trimesh``:
    z up, front facing +y (the convention of :mod:`transinr.data.mesh_views`)."""
    if category not in BUILDERS:
        raise ValueError(f"unknown category '{category}', expected one of {sorted(BUILDERS)}")
    trimesh = _trimesh()
    mesh = trimesh.util.concatenate(BUILDERS[category](rng))
    if FRONT_TURN_DEGREES[category]:
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.radians(FRONT_TURN_DEGREES[category]),
                                                                     [0, 0, 1]))
    return mesh


# -- dataset ------------------------------------------------------------------------


def data_root() -> Path:
    """``$TRANSINR_DATA`` or ``~/.cache/transinr``."""
    return Path(os.environ.get("TRANSINR_DATA", "~/.cache/transinr")).expanduser()


def default_embedded_3d_root(resolution: int = 64) -> Path:
    return data_root() / "shapes3d" / f"{resolution}px"


def embedded_3d_root(resolution: int = 64, n_objects_per_category: int = DEFAULT_OBJECTS_PER_CATEGORY,
                     n_views: int = DEFAULT_VIEWS) -> Path:
    """The folder of the embedded set of this size: the default size in
    ``$TRANSINR_DATA/shapes3d/<resolution>px``, others beside it named after their size."""
    root = default_embedded_3d_root(resolution)
    if (n_objects_per_category, n_views) != (DEFAULT_OBJECTS_PER_CATEGORY, DEFAULT_VIEWS):
        root = root.with_name(f"{root.name}-{n_objects_per_category}objects-{n_views}views")
    return root


def build_embedded_3d(
    out_root=None,
    n_objects_per_category: int = DEFAULT_OBJECTS_PER_CATEGORY,
    n_views: int = DEFAULT_VIEWS,
    resolution: int = 64,
    seed: int = 0,
    categories=CATEGORIES,
    supersample: int = 2,
    views: str = "sphere",
    first_view: tuple[float, float] | None = None,
    splits=None,
) -> Path:
    """Generate and render the procedural dataset into the learnit layout.

    ``first_view`` (azimuth°, elevation°) puts every object's view 0 at the same camera
    (:func:`transinr.data.mesh_views.write_object_views`).

    Object ``k`` of a category is ``make_shape(category, default_rng([seed, c, k]))``
    with ``c`` the category's index in :data:`CATEGORIES`, and is named
    ``<category>_<k:04d>``. Objects already rendered are kept (an interrupted build
    resumes). ``splits`` (e.g. ``("test",)``) renders only those splits' objects; the split
    file always lists every object, so the split is the full set's. ``build_info.json`` is
    written last. Returns the dataset root.
    """
    if out_root is None:
        out_root = embedded_3d_root(resolution, n_objects_per_category, n_views)
    out_root = Path(out_root).expanduser()
    out_root.mkdir(parents=True, exist_ok=True)
    start = time.time()
    split_of = {category: split_ids(object_ids(category, n_objects_per_category), seed) for category in categories}
    wanted = {category: {i for split in (splits or split_of[category]) for i in split_of[category][split]}
              for category in categories}
    jobs = [(category, k) for category in categories for k in range(n_objects_per_category)
            if f"{category}_{k:04d}" in wanted[category]]
    for category, k in tqdm(jobs, desc="building 3D shapes", unit="object"):
        object_id = f"{category}_{k:04d}"
        object_dir = out_root / category / object_id
        if (object_dir / "transforms.json").is_file():
            continue
        rng = np.random.default_rng([seed, CATEGORIES.index(category) if category in CATEGORIES else 99, k])
        vertices, faces, albedo = scene_to_arrays(make_shape(category, rng))
        vertices = normalise_to_unit_sphere(vertices, up_axis="z")
        write_object_views((vertices, faces, albedo), object_dir, object_id, n_views, resolution, seed,
                           BLENDER_CAMERA_ANGLE_X, 4.0, views, supersample, first_view=first_view)
    for category in categories:
        write_split_file(out_root, category, object_ids(category, n_objects_per_category), seed)
    info = dict(n_objects_per_category=n_objects_per_category, n_views=n_views, resolution=resolution, seed=seed,
                categories=list(categories), splits=sorted(splits) if splits else "all",
                supersample=supersample, views=views,
                first_view=list(first_view) if first_view is not None else None, convention=OBJECT_CONVENTION, build_seconds=round(time.time() - start, 1))
    (out_root / "build_info.json").write_text(json.dumps(info, indent=1))
    return out_root


def object_ids(category: str, n_objects_per_category: int) -> list[str]:
    """The names of a category's objects: ``<category>_0000`` on."""
    return [f"{category}_{k:04d}" for k in range(n_objects_per_category)]


def _built_with_current_convention(root: Path) -> bool:
    """A finished build whose objects follow today's orientation convention (older caches
    had cars and lamps facing +x; they are rebuilt)."""
    try:
        info = json.loads((root / "build_info.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("convention") == OBJECT_CONVENTION


def built_categories(root: Path, splits=None) -> list[str]:
    """Categories whose build finished under ``root`` (listed in its ``build_info.json``)
    under today's object convention; none for an older cache, which is rebuilt. With
    ``splits``, also those of which (at least) those splits were built."""
    if not _built_with_current_convention(Path(root)):
        return []
    info = json.loads((Path(root) / "build_info.json").read_text())
    done = list(info.get("categories", []))
    if splits:
        done += [category for category, built in info.get("partial", {}).items()
                 if category not in done and set(splits) <= set(built)]
    return done


def ensure_embedded_3d(resolution: int = 64, categories=CATEGORIES,
                       n_objects_per_category: int = DEFAULT_OBJECTS_PER_CATEGORY,
                       n_views: int = DEFAULT_VIEWS, splits=None, **kwargs) -> Path:
    """Path of the procedural dataset at ``resolution``, each of ``categories`` built on
    first use: only the categories asked for (100 chairs of 50 views: minutes on a CPU),
    and with ``splits`` (e.g. ``("test",)``) only those splits' objects (the split is the
    full set's: a later call for every split renders the rest).

    The default size lives in ``$TRANSINR_DATA/shapes3d/<resolution>px``; other sizes
    (e.g. a tiny smoke-test set, or 1,000 chairs) in a folder named after them.
    """
    root = embedded_3d_root(resolution, n_objects_per_category, n_views)
    categories = [categories] if isinstance(categories, str) else list(categories)
    splits = sorted(set(splits)) if splits else None
    done = built_categories(root, splits)
    missing = [category for category in categories if category not in done]
    if not missing:
        return root
    complete = built_categories(root)
    partial_info = {}  # category → the splits built of it, for categories built in part
    if _built_with_current_convention(root):
        partial_info = json.loads((root / "build_info.json").read_text()).get("partial", {})
    # Build next to the final folder, then move each category in place: no half-built
    # category is ever mistaken for a finished one (an interrupted build resumes). A
    # category built in part moves into the build first, so its objects are not rendered again.
    partial = root.with_name(root.name + ".partial")
    for category in missing:
        if category in partial_info and (root / category).is_dir() and not (partial / category).exists():
            partial.mkdir(parents=True, exist_ok=True)
            (root / category).rename(partial / category)
    build_embedded_3d(partial, n_objects_per_category, n_views, resolution, categories=tuple(missing),
                      splits=splits, **kwargs)
    root.mkdir(parents=True, exist_ok=True)
    for category in missing:
        if (root / category).exists():
            shutil.rmtree(root / category)
        (partial / category).rename(root / category)
        os.replace(partial / f"{category}_splits.json", root / f"{category}_splits.json")
    built = json.loads((partial / "build_info.json").read_text())
    if splits is None:
        partial_info = {c: s for c, s in partial_info.items() if c not in missing}
        built["categories"] = [c for c in CATEGORIES if c in complete or c in missing]
    else:
        partial_info.update({c: sorted(set(partial_info.get(c, [])) | set(splits)) for c in missing})
        built["categories"] = [c for c in CATEGORIES if c in complete]
    if partial_info:
        built["partial"] = partial_info
    built.pop("splits", None)
    built["last_build"] = {"categories": missing, "splits": splits or "all", "seconds": built.pop("build_seconds")}
    scratch = partial / "build_info.json"
    scratch.write_text(json.dumps(built, indent=1))
    os.replace(scratch, root / "build_info.json")  # written last: the categories are complete
    shutil.rmtree(partial)
    return root


def cli_main(argv=None) -> int:
    from . import sweethome3d

    parser = argparse.ArgumentParser(
        prog="transinr build-3d",
        description="Build a multi-view 3D dataset in the learnit layout: the procedural chairs/cars/lamps "
                    "(default), or real furniture from Sweet Home 3D's catalogues (--source sweethome3d).")
    parser.add_argument("--source", choices=("procedural", "sweethome3d"), default="procedural")
    parser.add_argument("--out", default=None,
                        help="output root (default: the cache a config reads, $TRANSINR_DATA/shapes3d/<res>px for "
                             "100 objects of 50 views, <res>px-<N>objects-<V>views for others; sweethome3d/<res>px)")
    parser.add_argument("--objects", type=int, default=None,
                        help=f"objects per category (procedural, default {DEFAULT_OBJECTS_PER_CATEGORY}; "
                             "sweethome3d: at most this many, default all)")
    parser.add_argument("--views", type=int, default=DEFAULT_VIEWS, help="views per object")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--categories", nargs="+", default=None,
                        help=f"procedural: some of {' '.join(CATEGORIES)} (default all); "
                             f"sweethome3d: some of {' '.join(sweethome3d.CATEGORIES)} (default chair)")
    parser.add_argument("--supersample", type=int, default=2)
    parser.add_argument("--view-sphere", choices=("sphere", "hemisphere"), default="sphere")
    parser.add_argument("--first-view", type=float, nargs=2, metavar=("AZIMUTH", "ELEVATION"), default=None,
                        help="procedural: view 0 of every object from this camera (degrees), e.g. 30 20; "
                             "train with nvs.train_support=fixed to always give the model that view")
    parser.add_argument("--splits", nargs="+", choices=("train", "val", "test"), default=None,
                        help="procedural: render only these splits' objects (the split is the full set's), "
                             "e.g. --splits test to score a model without building its training set")
    parser.add_argument("--furniture-dir", default=str(sweethome3d.DEFAULT_FURNITURE_DIR),
                        help="sweethome3d: folder of the *.sh3f archives")
    args = parser.parse_args(argv)
    known = CATEGORIES if args.source == "procedural" else sweethome3d.CATEGORIES
    categories = tuple(args.categories or (CATEGORIES if args.source == "procedural" else ("chair",)))
    unknown = [c for c in categories if c not in known]
    if unknown:
        parser.error(f"--categories {' '.join(unknown)}: the {args.source} source has {' '.join(known)}")
    common = dict(n_views=args.views, resolution=args.resolution, seed=args.seed, categories=categories,
                  supersample=args.supersample, views=args.view_sphere)
    if args.source == "sweethome3d":
        if args.splits:
            parser.error("--splits: the sweethome3d source builds every model it reads")
        try:
            root = sweethome3d.build_sweethome3d(args.out, args.furniture_dir, max_per_category=args.objects,
                                                 **common)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    else:
        first_view = tuple(args.first_view) if args.first_view is not None else None
        n_objects = args.objects or DEFAULT_OBJECTS_PER_CATEGORY
        if args.out is None:
            # The cache a config with data.n_objects reads: it is named after its size, and
            # holds only the standard build (other options would pass for it).
            custom = [flag for flag, changed in (("--seed", args.seed != 0), ("--supersample", args.supersample != 2),
                                                 ("--view-sphere", args.view_sphere != "sphere"),
                                                 ("--first-view", first_view is not None)) if changed]
            if custom:
                parser.error(f"{' '.join(custom)}: a non-standard build needs --out (the cache "
                             f"{embedded_3d_root(args.resolution, n_objects, args.views)} holds the standard one)")
            start = time.time()
            root = ensure_embedded_3d(args.resolution, categories, n_objects, args.views, splits=args.splits)
            print(f"built {root} in {time.time() - start:.1f} s")
            return 0
        root = build_embedded_3d(args.out, n_objects_per_category=n_objects,
                                 first_view=first_view, splits=args.splits, **common)
    info = json.loads((root / "build_info.json").read_text())
    print(f"built {root} in {info['build_seconds']} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(cli_main())

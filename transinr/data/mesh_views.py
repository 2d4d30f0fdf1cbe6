"""Render a folder of meshes into posed views in the learnit ShapeNet layout.

CPU only: rays from :func:`transinr.render.get_rays` are cast with trimesh, through
Embree when the ``embreex`` package is installed (fast) and trimesh's pure-numpy
intersector otherwise (slow; a warning says so).

What a view looks like:

* One object convention for every source (procedural shapes, mesh folders, Sweet
  Home 3D): **upright along +z, front facing +y, fitted to the unit sphere** (centred
  on its bounding-box centre, farthest vertex at radius 1). Meshes whose up axis is
  +y (glTF, most OBJ exports, Sweet Home 3D) are taken to face +z, as glTF and Sweet
  Home 3D specify, and are turned so that their +y goes to +z and their +z to +y
  (:func:`normalise_to_unit_sphere`).
* Cameras look at the origin from ``radius`` (default 4, so the object lies between
  the near 2 and far 6 planes) with ``camera_angle_x`` 0.6911 rad (Blender's default
  50 mm lens). Directions are uniform on the whole sphere (``views="sphere"``, the
  default) or on the upper hemisphere (``views="hemisphere"``).
* Shading is Lambertian under two directional lights fixed in the world (a key light
  from above and a weaker fill from below) plus ambient light, so a surface point has
  the same colour in every view, as a radiance field without view dependence assumes.
  Surfaces are two-sided.
* Albedo per face: vertex or face colours when the mesh has them; otherwise the
  material's colour: for glTF ``baseColorFactor`` times the texture's mean colour, for
  OBJ/MTL the texture's mean colour (``map_Kd``) or else ``Kd``. Textures are not
  sampled per pixel: a textured part gets one flat colour.
* Alpha is the fraction of covered sub-pixels (``supersample`` x ``supersample`` rays
  per pixel), colour is the mean over the covered sub-pixels (straight alpha).

Output, per object ``<out_root>/<category>/<id>/``: ``r_000.png`` ... RGBA views and
``transforms.json`` (``camera_angle_x``, ``frames[].file_path`` without extension as in
the NeRF/learnit data, ``frames[].transform_matrix``); and ``<out_root>/<category>_splits.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from transinr.render import focal_from_angle, get_rays, pose_spherical

BLENDER_CAMERA_ANGLE_X = 0.6911112070083618
MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")
# World-space lights (unit vectors are taken later) and their strengths.
KEY_LIGHT = (0.4, 0.3, 1.0)
FILL_LIGHT = (-0.5, -0.6, -0.4)
KEY_STRENGTH, FILL_STRENGTH, AMBIENT = 0.55, 0.25, 0.45
DEFAULT_ALBEDO = (0.7, 0.7, 0.7)
# Recorded in every build's metadata, so that a cache written under another convention is
# recognised and rebuilt (see normalise_to_unit_sphere).
OBJECT_CONVENTION = "z up, front +y, unit sphere"


def _trimesh():
    from transinr.errors import require

    return require("trimesh", "Rendering meshes", "pip install trimesh scipy rtree (and embreex where it has a wheel, for speed)")


# -- meshes -------------------------------------------------------------------------


def _texture_mean(image) -> np.ndarray | None:
    """Mean RGB in [0, 1] of a PIL texture, weighted by its alpha."""
    if image is None:
        return None
    try:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255.0
    except Exception:  # unreadable texture: fall back to the material colour
        return None
    weight = rgba[..., 3:]
    if weight.sum() == 0:
        return None
    return (rgba[..., :3] * weight).sum(axis=(0, 1)) / weight.sum()


def _material_albedo(material) -> np.ndarray:
    """Main colour of a trimesh material (RGB in [0, 1]), texture mean folded in.

    glTF (PBR) materials: ``baseColorFactor`` times the texture mean, as the glTF
    spec multiplies them. OBJ/MTL materials: the texture mean when there is a
    ``map_Kd`` texture (most viewers ignore ``Kd`` then), else ``Kd``.
    """
    texture = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    texture_mean = _texture_mean(texture)
    factor = getattr(material, "baseColorFactor", None)
    diffuse = getattr(material, "diffuse", None)
    if factor is not None:
        colour = np.asarray(factor, dtype=np.float64)[:3]
        colour = colour / 255.0 if colour.max() > 1.0 else colour
        if texture_mean is not None:
            colour = colour * texture_mean
    elif texture_mean is not None:
        colour = texture_mean
    elif diffuse is not None:
        colour = np.asarray(diffuse, dtype=np.float64)[:3] / 255.0
    else:
        colour = np.asarray(DEFAULT_ALBEDO)
    return np.clip(colour, 0.0, 1.0)


def face_albedo(mesh) -> np.ndarray:
    """Per-face RGB albedo ``(F, 3)`` in [0, 1] from a trimesh mesh's visuals."""
    visual = mesh.visual
    n_faces = len(mesh.faces)
    if visual.kind == "texture":
        material = getattr(visual, "material", None)
        albedo = _material_albedo(material) if material is not None else np.asarray(DEFAULT_ALBEDO)
        return np.tile(albedo, (n_faces, 1))
    if visual.kind in ("face", "vertex"):
        return np.asarray(visual.face_colors[:, :3], dtype=np.float64) / 255.0
    return np.tile(np.asarray(DEFAULT_ALBEDO), (n_faces, 1))


def load_mesh(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load a mesh file (or scene) as vertices ``(N, 3)``, faces ``(F, 3)``, albedo ``(F, 3)``.

    Scenes (GLB, multi-material OBJ) are flattened with each node's transform.
    Raises ValueError when the file holds no triangles.
    """
    trimesh = _trimesh()
    loaded = trimesh.load(str(path), force="scene")
    return scene_to_arrays(loaded, source=str(path))


def scene_to_arrays(scene_or_mesh, source: str = "mesh") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten a trimesh Trimesh or Scene into (vertices, faces, per-face albedo)."""
    trimesh = _trimesh()
    if isinstance(scene_or_mesh, trimesh.Trimesh):
        parts = [(scene_or_mesh, np.eye(4))]
    else:
        parts = []
        for node in scene_or_mesh.graph.nodes_geometry:
            transform, geometry_name = scene_or_mesh.graph[node]
            geometry = scene_or_mesh.geometry[geometry_name]
            if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
                parts.append((geometry, transform))
    vertices, faces, albedo, offset = [], [], [], 0
    for mesh, transform in parts:
        v = np.asarray(mesh.vertices, dtype=np.float64)
        v = v @ np.asarray(transform)[:3, :3].T + np.asarray(transform)[:3, 3]
        vertices.append(v)
        faces.append(np.asarray(mesh.faces) + offset)
        albedo.append(face_albedo(mesh))
        offset += len(v)
    if not vertices:
        raise ValueError(f"{source}: no triangles found")
    return np.concatenate(vertices), np.concatenate(faces), np.concatenate(albedo)


def normalise_to_unit_sphere(vertices: np.ndarray, up_axis: str = "z") -> np.ndarray:
    """Centre on the bounding-box centre, scale the farthest vertex to radius 1, make z up.

    ``up_axis="z"``: the mesh is already in the kit's convention (z up, front +y).
    ``up_axis="y"``: a y-up mesh facing +z (glTF, Sweet Home 3D) is turned by 180°
    about the axis (0, 1, 1)/√2, so its up +y becomes +z and its front +z becomes +y
    (x becomes -x: a proper rotation, not a mirror image).
    """
    centre = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    v = vertices - centre
    radius = np.linalg.norm(v, axis=1).max()
    if radius > 0:
        v = v / radius
    if up_axis == "y":
        v = np.stack([-v[:, 0], v[:, 2], v[:, 1]], axis=1)
    elif up_axis != "z":
        raise ValueError(f"up_axis must be 'y' or 'z', got '{up_axis}'")
    return v


# -- ray casting --------------------------------------------------------------------

_warned_no_embree = False


def _intersector(mesh):
    """Embree intersector when embreex is installed, trimesh's numpy one otherwise."""
    global _warned_no_embree
    from trimesh.ray import ray_triangle

    try:
        if os.environ.get("TRANSINR_NO_EMBREE", "") not in ("", "0"):  # force the fallback (tests, debugging)
            raise ImportError("TRANSINR_NO_EMBREE is set")
        from trimesh.ray import ray_pyembree

        return ray_pyembree.RayMeshIntersector(mesh)
    except Exception:  # ImportError, or embreex failing to load its library
        if not _warned_no_embree:
            warnings.warn("embreex is not available: ray casting falls back to trimesh's slow numpy code "
                          "(pip install embreex, where it has a wheel: x86-64, macOS 13+ on arm64)", stacklevel=3)
            _warned_no_embree = True
        return ray_triangle.RayMeshIntersector(mesh)


def _first_hits(intersector, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face index of the first hit per ray (-1 for a miss) and hit points ``(n, 3)``."""
    locations, ray_index, tri_index = intersector.intersects_location(origins, dirs, multiple_hits=False)
    faces = np.full(len(origins), -1, dtype=np.int64)
    points = np.zeros((len(origins), 3))
    faces[ray_index] = tri_index
    points[ray_index] = locations
    return faces, points


def shade(normals: np.ndarray, albedo: np.ndarray, ray_dirs: np.ndarray) -> np.ndarray:
    """Two-sided Lambertian shading with the fixed world lights: ``(n, 3)`` RGB."""
    facing = np.sign(-(normals * ray_dirs).sum(axis=1, keepdims=True))
    facing[facing == 0] = 1.0
    n = normals * facing  # flip back faces towards the camera
    light = np.full((len(n), 1), AMBIENT)
    for direction, strength in ((KEY_LIGHT, KEY_STRENGTH), (FILL_LIGHT, FILL_STRENGTH)):
        d = np.asarray(direction, dtype=np.float64)
        d = d / np.linalg.norm(d)
        light = light + strength * np.clip(n @ d, 0.0, None)[:, None]
    return np.clip(albedo * light, 0.0, 1.0)


def render_mesh_views(mesh, poses, focal: float, height: int, width: int, supersample: int = 2) -> np.ndarray:
    """Ray-cast RGBA views of a mesh.

    Args:
        mesh: a ``trimesh.Trimesh`` (its visuals give the colours) or a tuple
            ``(vertices (N, 3), faces (F, 3), albedo (F, 3) in [0, 1])``; used as is
            (no normalisation).
        poses: ``(V, 4, 4)`` camera-to-world matrices (numpy or torch).
        focal: focal length in pixels for ``width``.
        supersample: rays per pixel along each axis (anti-aliasing).
    Returns:
        ``(V, H, W, 4)`` uint8 RGBA, straight (not premultiplied) alpha.
    """
    trimesh = _trimesh()
    if isinstance(mesh, tuple):
        vertices, faces, albedo = mesh
    else:
        vertices, faces, albedo = scene_to_arrays(mesh)
    tri = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    normals = np.asarray(tri.face_normals)
    intersector = _intersector(tri)
    poses_t = torch.as_tensor(np.asarray(poses), dtype=torch.float32)
    s = supersample
    _, dirs = get_rays(poses_t, focal * s, height * s, width * s)  # (V, sH, sW, 3)
    dirs = dirs.reshape(len(poses_t), -1, 3).numpy().astype(np.float64)
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    centres = poses_t[:, :3, 3].numpy().astype(np.float64)
    out = np.zeros((len(poses_t), height, width, 4), dtype=np.uint8)
    for v in range(len(poses_t)):
        d = dirs[v]
        o = np.broadcast_to(centres[v], d.shape)
        hit_face, _ = _first_hits(intersector, o, d)
        hit = hit_face >= 0
        colour = np.zeros((len(o), 3))
        colour[hit] = shade(normals[hit_face[hit]], albedo[hit_face[hit]], d[hit])
        # Average the sub-pixels: coverage gives alpha, covered sub-pixels give colour.
        colour = colour.reshape(height, s, width, s, 3).sum(axis=(1, 3))
        coverage = hit.reshape(height, s, width, s).sum(axis=(1, 3)).astype(np.float64)
        rgb = np.where(coverage[..., None] > 0, colour / np.maximum(coverage, 1)[..., None], 1.0)
        out[v, ..., :3] = np.round(rgb * 255).astype(np.uint8)
        out[v, ..., 3] = np.round(coverage / (s * s) * 255).astype(np.uint8)
    return out


# -- cameras and splits -------------------------------------------------------------


def sample_view_angles(n_views: int, rng: np.random.Generator, views: str = "sphere") -> tuple[np.ndarray, np.ndarray]:
    """Azimuths and elevations (degrees) of directions uniform on the sphere/hemisphere."""
    if views == "sphere":
        z = rng.uniform(-1.0, 1.0, n_views)
    elif views == "hemisphere":
        z = rng.uniform(0.0, 1.0, n_views)
    else:
        raise ValueError(f"views must be 'sphere' or 'hemisphere', got '{views}'")
    azimuth = rng.uniform(0.0, 360.0, n_views)
    elevation = np.degrees(np.arcsin(z))
    return azimuth, elevation


def split_ids(ids: Sequence[str], seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[str]]:
    """Seeded shuffle of the sorted ids into train/val/test.

    Rounded fractions, with at least one test object from 2 objects on and at least
    one val object from 3 on, so that tiny datasets still have every split they can.
    """
    ids = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    n = len(ids)
    n_test = round(fractions[2] * n)
    n_val = round(fractions[1] * n)
    if n >= 2 and n_test == 0:
        n_test = 1
    if n >= 3 and n_val == 0:
        n_val = 1
    test = sorted(shuffled[:n_test])
    val = sorted(shuffled[n_test : n_test + n_val])
    train = sorted(shuffled[n_test + n_val :])
    return {"train": train, "val": val, "test": test}


def hash_split_ids(ids: Sequence[str], fractions=(0.8, 0.1, 0.1)) -> dict[str, list[str]]:
    """Train/val/test by a stable hash of each id (CRC-32 → a position in [0, 1)).

    An object's split depends on its id alone, not on which other objects exist, so a
    build that skips an unreadable model (or a later catalogue that adds some) keeps
    every other object where it was. Positions below ``fractions[2]`` are test, the
    next ``fractions[1]`` val, the rest train.
    """
    splits = {"train": [], "val": [], "test": []}
    for object_id in sorted(ids):
        position = zlib.crc32(object_id.encode("utf-8")) / 2**32
        if position < fractions[2]:
            splits["test"].append(object_id)
        elif position < fractions[2] + fractions[1]:
            splits["val"].append(object_id)
        else:
            splits["train"].append(object_id)
    return splits


def object_seed(seed: int, object_id: str) -> list[int]:
    """Per-object seed: views do not depend on which other objects are rendered."""
    return [seed, zlib.crc32(object_id.encode("utf-8"))]


def _object_id(path: Path, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("_") or "mesh"
    object_id, k = base, 1
    while object_id in taken:
        k += 1
        object_id = f"{base}_{k}"
    taken.add(object_id)
    return object_id


# -- writing ------------------------------------------------------------------------


def write_object_views(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
    object_dir: Path,
    object_id: str,
    n_views: int,
    resolution: int,
    seed: int,
    camera_angle_x: float = BLENDER_CAMERA_ANGLE_X,
    radius: float = 4.0,
    views: str = "sphere",
    supersample: int = 2,
    extra: dict | None = None,
    first_view: tuple[float, float] | None = None,
) -> None:
    """Render one normalised mesh into ``object_dir`` (PNGs, then transforms.json).

    first_view: (azimuth°, elevation°) of view 0 for every object (one canonical input
    camera, the other views random as before); None: view 0 is random too.
    """
    rng = np.random.default_rng(object_seed(seed, object_id))
    azimuth, elevation = sample_view_angles(n_views, rng, views)
    if first_view is not None:
        azimuth[0], elevation[0] = first_view
    poses = pose_spherical(torch.from_numpy(azimuth), torch.from_numpy(elevation), radius).numpy()
    focal = focal_from_angle(camera_angle_x, resolution)
    images = render_mesh_views(arrays, poses, focal, resolution, resolution, supersample)
    object_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    for k, (image, pose) in enumerate(zip(images, poses)):
        name = f"r_{k:03d}"
        Image.fromarray(image, mode="RGBA").save(object_dir / f"{name}.png", optimize=True)
        frames.append({
            "file_path": f"./{name}",
            "transform_matrix": pose.astype(float).round(7).tolist(),
            "azimuth_deg": round(float(azimuth[k]), 4),
            "elevation_deg": round(float(elevation[k]), 4),
        })
    meta = {"camera_angle_x": camera_angle_x, "radius": radius, **(extra or {}), "frames": frames}
    # transforms.json is written last and atomically: its presence marks a finished object.
    tmp = object_dir / "transforms.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, object_dir / "transforms.json")


def render_mesh_folder(
    mesh_dir,
    out_root,
    category: str,
    n_views: int = 50,
    resolution: int = 64,
    seed: int = 0,
    camera_angle_x: float = BLENDER_CAMERA_ANGLE_X,
    radius: float = 4.0,
    views: str = "sphere",
    up_axis: str = "y",
    supersample: int = 2,
    fractions=(0.8, 0.1, 0.1),
    recursive: bool = True,
    max_meshes: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Render every mesh under ``mesh_dir`` into the learnit layout under ``out_root``.

    Objects already rendered (a ``transforms.json`` with the same settings) are kept,
    so an interrupted run resumes. Files that fail to load are skipped with one
    warning that counts them. Returns ``out_root``.
    """
    mesh_dir, out_root = Path(mesh_dir).expanduser(), Path(out_root).expanduser()
    if not mesh_dir.is_dir():
        raise FileNotFoundError(f"Mesh folder {mesh_dir} does not exist (expected OBJ/GLB/PLY files in it)")
    pattern = "**/*" if recursive else "*"
    paths = sorted(p for p in mesh_dir.glob(pattern) if p.suffix.lower() in MESH_SUFFIXES and p.is_file())
    if max_meshes is not None:
        paths = paths[:max_meshes]
    if not paths:
        raise FileNotFoundError(f"No mesh files ({', '.join(MESH_SUFFIXES)}) found in {mesh_dir}")
    settings = dict(n_views=n_views, resolution=resolution, seed=seed, views=views, up_axis=up_axis,
                    supersample=supersample)
    taken: set[str] = set()
    items = [(_object_id(p, taken), p) for p in paths]
    category_dir = out_root / category
    failed: list[tuple[str, str]] = []
    done: list[str] = []
    for object_id, path in tqdm(items, desc=f"rendering {category}", unit="mesh"):
        object_dir = category_dir / object_id
        extra = {"source": str(path.relative_to(mesh_dir)), "render_settings": settings}
        if not overwrite and _already_rendered(object_dir, settings, camera_angle_x, radius):
            done.append(object_id)
            continue
        try:
            vertices, faces, albedo = load_mesh(path)
            vertices = normalise_to_unit_sphere(vertices, up_axis)
        except Exception as err:  # any loader error: skip this file, report at the end
            # trimesh asks charset_normalizer to guess the encoding of bytes that are
            # not UTF-8; without it, that reads as a missing package, not a bad file.
            why = ("not a readable mesh (its bytes are not text in a known encoding)"
                   if isinstance(err, ImportError) else f"{type(err).__name__}: {err}")
            failed.append((path.name, why))
            continue
        write_object_views((vertices, faces, albedo), object_dir, object_id, n_views, resolution, seed,
                           camera_angle_x, radius, views, supersample, extra)
        done.append(object_id)
    if failed:
        examples = "; ".join(f"{n} ({why[:80]})" for n, why in failed[:5])
        warnings.warn(f"skipped {len(failed)} of {len(paths)} mesh files that could not be loaded: {examples}",
                      stacklevel=2)
    if not done:
        raise ValueError(f"none of the {len(paths)} mesh files in {mesh_dir} could be used, so no "
                         f"views were written (e.g. {failed[0][0]}: {failed[0][1][:120]})")
    write_split_file(out_root, category, done, seed, fractions)
    return out_root


def _already_rendered(object_dir: Path, settings: dict, camera_angle_x: float, radius: float) -> bool:
    meta_path = object_dir / "transforms.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    return (meta.get("render_settings") == settings and meta.get("camera_angle_x") == camera_angle_x
            and meta.get("radius") == radius)


def write_split_file(out_root: Path, category: str, ids: Iterable[str], seed: int, fractions=(0.8, 0.1, 0.1),
                     by_hash: bool = False) -> Path:
    """Write ``<out_root>/<category>_splits.json``: a seeded split of ``ids``
    (:func:`split_ids`), or with ``by_hash`` a split by each id's hash (:func:`hash_split_ids`)."""
    splits = hash_split_ids(list(ids), fractions) if by_hash else split_ids(list(ids), seed, fractions)
    path = Path(out_root) / f"{category}_splits.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(splits, indent=1))
    return path


# -- command line -------------------------------------------------------------------


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="transinr render-meshes",
        description="Render a folder of OBJ/GLB/PLY meshes into learnit-format posed views.")
    parser.add_argument("mesh_dir", help="folder searched (recursively) for mesh files")
    parser.add_argument("out_root", help="dataset root to write (<out_root>/<category>/<id>/...)")
    parser.add_argument("--category", required=True, help="category name, e.g. chair")
    parser.add_argument("--n-views", type=int, default=50)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--camera-angle-x", type=float, default=BLENDER_CAMERA_ANGLE_X, help="radians")
    parser.add_argument("--radius", type=float, default=4.0)
    parser.add_argument("--views", choices=("sphere", "hemisphere"), default="sphere")
    parser.add_argument("--up-axis", choices=("y", "z"), default="y", help="the meshes' up axis: y (glTF/OBJ/Sweet Home 3D: y up, front +z) "
                        "or z (already z up, front +y)")
    parser.add_argument("--supersample", type=int, default=2, help="rays per pixel along each axis")
    parser.add_argument("--max-meshes", type=int, default=None)
    parser.add_argument("--no-recursive", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="re-render objects already done")
    return parser


def cli_main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = render_mesh_folder(
        args.mesh_dir, args.out_root, args.category, n_views=args.n_views, resolution=args.resolution,
        seed=args.seed, camera_angle_x=args.camera_angle_x, radius=args.radius, views=args.views,
        up_axis=args.up_axis, supersample=args.supersample, recursive=not args.no_recursive,
        max_meshes=args.max_meshes, overwrite=args.overwrite)
    print(f"wrote {out / args.category} and {out / (args.category + '_splits.json')}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(cli_main())

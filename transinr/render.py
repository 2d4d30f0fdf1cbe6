"""Cameras, rays and volume rendering for novel view synthesis.

Conventions (the learnit / NeRF-Blender ones):

* Poses are camera-to-world matrices ``(4, 4)``. In camera space x points right,
  y points up and the camera looks down ``-z``.
* The world is z-up: ``pose_spherical`` keeps the camera's y axis in the vertical
  plane through +z, like the Blender-rendered NeRF/learnit data (Blender scenes are
  z-up and their ``transform_matrix`` entries are Blender world matrices).
* Pixel ``(row j, column i)`` is sampled at its centre ``(i + 0.5, j + 0.5)``; the
  principal point is the image centre ``(W / 2, H / 2)``.
* Ray directions are NOT normalised: in camera space they are
  ``((i + 0.5 - W/2) / f, -(j + 0.5 - H/2) / f, -1)``, so ``t`` along a ray is depth
  along the optical axis and ``near`` / ``far`` are depth bounds.

Two volume-rendering quadratures (``convention``):

* ``"learnit"`` — the one the paper's numbers use (Tancik et al.'s learnit code, which
  the official Trans-INR follows): sample spacing in depth units, the last sample's
  interval 1e-3, transmittance as a product of ``1 - α + 1e-10``, and stratified
  samples that shift each evenly spaced depth forward by up to one spacing.
* ``"nerf"`` — Mildenhall et al.'s: spacing × ‖direction‖ (metric distances), the last
  interval "infinite" (1e10), stratified samples drawn between the mid-points.

Both composite onto a white background.

Everything here is plain torch and works on any device the inputs live on.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

Field = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# Interval given to the last sample of every ray. NeRF: "infinitely" long, so that a
# ray that reaches the last sample deposits all of its remaining transmittance there
# if the density is non-zero. learnit: a sliver, so what lies past ``far`` stays
# (mostly) background.
LAST_INTERVAL = {"learnit": 1e-3, "nerf": 1e10}
CONVENTIONS = tuple(LAST_INTERVAL)


def check_convention(convention: str) -> str:
    if convention not in LAST_INTERVAL:
        raise ValueError(f"unknown render convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    return convention


def pose_spherical(azimuth_deg, elevation_deg, radius) -> torch.Tensor:
    """Camera-to-world pose on a sphere around the origin, looking at the origin.

    The camera sits at ``radius * (cos(el) cos(az), cos(el) sin(az), sin(el))`` in a
    z-up world: azimuth is measured in the xy-plane from +x towards +y, elevation is
    positive above the xy-plane. Its x axis (right) stays horizontal and its y axis
    (up) points towards +z, so the horizon is level in every view; the pose stays
    well defined at the poles (elevation ±90°), where "right" follows the azimuth.

    Args:
        azimuth_deg, elevation_deg, radius: floats or tensors of a common shape ``S``.
    Returns:
        ``(4, 4)`` float32 tensor for scalar inputs, ``(*S, 4, 4)`` otherwise.
    """
    az, el, r = torch.broadcast_tensors(
        *(torch.as_tensor(v, dtype=torch.float32) for v in (azimuth_deg, elevation_deg, radius))
    )
    az, el = torch.deg2rad(az), torch.deg2rad(el)
    cos_el, sin_el, cos_az, sin_az = el.cos(), el.sin(), az.cos(), az.sin()
    zeros = torch.zeros_like(az)
    # Camera z axis points from the origin to the camera (it looks down -z).
    back = torch.stack([cos_el * cos_az, cos_el * sin_az, sin_el], dim=-1)
    # cross(world_up, back) normalised, written out so that it never degenerates.
    right = torch.stack([-sin_az, cos_az, zeros], dim=-1)
    up = torch.linalg.cross(back, right, dim=-1)
    pose = torch.zeros(*az.shape, 4, 4, dtype=torch.float32, device=az.device)
    pose[..., :3, 0] = right
    pose[..., :3, 1] = up
    pose[..., :3, 2] = back
    pose[..., :3, 3] = back * r[..., None]
    pose[..., 3, 3] = 1.0
    return pose


def camera_directions(height: int, width: int, focal, device=None) -> torch.Tensor:
    """Un-normalised ray directions in camera space through pixel centres.

    Args:
        focal: float, or tensor ``(B,)`` (one focal length per camera).
    Returns:
        ``(H, W, 3)`` for a float focal, ``(B, H, W, 3)`` for a tensor focal ``(B,)``.
    """
    focal_t = torch.as_tensor(focal, dtype=torch.float32, device=device)
    device = focal_t.device
    cols = torch.arange(width, dtype=torch.float32, device=device) + 0.5 - width / 2
    rows = torch.arange(height, dtype=torch.float32, device=device) + 0.5 - height / 2
    row_grid, col_grid = torch.meshgrid(rows, cols, indexing="ij")  # (H, W)
    f = focal_t.reshape(*focal_t.shape, 1, 1)  # (..., 1, 1)
    x = col_grid / f
    y = -row_grid / f  # image rows go down, camera y goes up
    z = -torch.ones_like(x)
    return torch.stack([x, y, z], dim=-1)


def get_rays(poses: torch.Tensor, focal, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through every pixel centre of posed pinhole cameras.

    Args:
        poses: ``(B, 4, 4)`` (or ``(4, 4)``) camera-to-world matrices.
        focal: float or tensor ``(B,)``, in pixels.
    Returns:
        origins ``(B, H, W, 3)`` and un-normalised directions ``(B, H, W, 3)``
        (camera-space z component -1, see the module docstring). A single ``(4, 4)``
        pose gives ``(H, W, 3)`` tensors.
    """
    single = poses.dim() == 2
    if single:
        poses = poses[None]
    poses = poses.float()
    batch = poses.shape[0]
    focal_t = torch.as_tensor(focal, dtype=torch.float32, device=poses.device)
    if focal_t.dim() == 0:
        focal_t = focal_t.expand(batch)
    dirs_cam = camera_directions(height, width, focal_t.reshape(batch), device=poses.device)  # (B, H, W, 3)
    rotation = poses[:, :3, :3]  # (B, 3, 3)
    dirs = torch.einsum("bij,bhwj->bhwi", rotation, dirs_cam)
    origins = poses[:, None, None, :3, 3].expand(batch, height, width, 3)
    if single:
        return origins[0], dirs[0]
    return origins, dirs


def sample_along_rays(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    near,
    far,
    n_samples: int,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    convention: str = "learnit",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points along rays between ``near`` and ``far``.

    Deterministic mode puts the samples on ``linspace(near, far, n_samples)``.
    Stratified mode (training) jitters them so every depth is seen over training:
    ``"nerf"`` splits ``[near, far]`` into intervals cut at the mid-points and draws one
    uniform sample in each; ``"learnit"`` moves every sample forward by a uniform
    fraction of the spacing ``(far - near) / (n_samples - 1)`` (so the last one may
    pass ``far`` by up to one spacing).

    Args:
        origins, dirs: ``(..., 3)``.
        near, far: floats or tensors broadcastable to ``(...)``.
    Returns:
        points ``(..., S, 3)`` and depths t ``(..., S)``.
    """
    batch_shape = origins.shape[:-1]
    device = origins.device
    steps = torch.linspace(0.0, 1.0, n_samples, device=device)
    near_t = torch.as_tensor(near, dtype=torch.float32, device=device)[..., None]
    far_t = torch.as_tensor(far, dtype=torch.float32, device=device)[..., None]
    t = near_t * (1.0 - steps) + far_t * steps
    t = t.expand(*batch_shape, n_samples)
    if stratified:
        u = torch.rand(t.shape, generator=generator, device=device if generator is None else generator.device)
        u = u.to(device)
        if check_convention(convention) == "learnit":
            t = t + u * (far_t - near_t) / max(n_samples - 1, 1)
        else:
            mids = 0.5 * (t[..., 1:] + t[..., :-1])
            upper = torch.cat([mids, t[..., -1:]], dim=-1)
            lower = torch.cat([t[..., :1], mids], dim=-1)
            t = lower + (upper - lower) * u
    points = origins[..., None, :] + dirs[..., None, :] * t[..., :, None]
    return points, t


def volume_render(
    rgb: torch.Tensor,
    density: torch.Tensor,
    t: torch.Tensor,
    dirs: torch.Tensor,
    white_background: bool = True,
    convention: str = "learnit",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha-composite samples along each ray (see the module docstring for the two
    quadratures).

    Args:
        rgb: ``(..., S, 3)`` colours in [0, 1].
        density: ``(..., S)`` non-negative densities.
        t: ``(..., S)`` sample depths (in units of the un-normalised direction).
        dirs: ``(..., 3)`` ray directions; under ``"nerf"`` their norm turns depth steps
            into distances, ``"learnit"`` ignores it.
    Returns:
        rgb_map ``(..., 3)`` and accumulated opacity acc ``(..., )`` in [0, 1].
    """
    check_convention(convention)
    deltas = t[..., 1:] - t[..., :-1]
    deltas = torch.cat([deltas, torch.full_like(deltas[..., :1], LAST_INTERVAL[convention])], dim=-1)
    if convention == "nerf":
        deltas = deltas * dirs.norm(dim=-1, keepdim=True)
    optical_depth = density * deltas  # (..., S)
    alpha = 1.0 - torch.exp(-optical_depth)
    if convention == "learnit":
        # Transmittance as the running product of 1 - α, kept above 1e-10 per factor.
        survive = (1.0 - alpha + 1e-10).clamp(max=1.0)
        transmittance = torch.cumprod(torch.cat([torch.ones_like(survive[..., :1]), survive[..., :-1]], dim=-1),
                                      dim=-1)
    else:
        # exp(-sum of the optical depth of earlier samples). An exclusive cumulative
        # sum avoids subtracting the huge last term.
        before = torch.cumsum(optical_depth[..., :-1], dim=-1)
        transmittance = torch.exp(-torch.cat([torch.zeros_like(before[..., :1]), before], dim=-1))
    weights = alpha * transmittance  # (..., S)
    rgb_map = (weights[..., None] * rgb).sum(dim=-2)
    acc = weights.sum(dim=-1)
    if white_background:
        rgb_map = rgb_map + (1.0 - acc[..., None])
    return rgb_map, acc


def _per_ray(value, batch: int, n_rays: int, device) -> torch.Tensor:
    """A float, ``(B,)`` or ``(B, R)`` depth bound as a ``(B, R)`` tensor."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.dim() == 1:
        t = t[:, None]
    return t.expand(batch, n_rays)


def render_rays(
    field: Field,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    near=2.0,
    far=6.0,
    n_samples: int = 128,
    stratified: bool = False,
    chunk: int = 1024,
    white_background: bool = True,
    generator: torch.Generator | None = None,
    return_acc: bool = False,
    convention: str = "learnit",
):
    """Render rays through a radiance field, a chunk of rays at a time.

    ``field(points (B, r, S, 3), viewdirs (B, r, 3)) -> (rgb (B, r, S, 3) in [0, 1],
    density (B, r, S) >= 0)``; ``viewdirs`` are unit vectors. The batch axis B is kept
    whole (each item may be a different object with its own weights) and the ray
    axis is split so that at most about ``chunk`` rays (``chunk * n_samples`` points)
    go through the field at once: with the default 1024 rays x 128 samples an MLP
    of width 256 holds ~134 MB per activation.

    Args:
        origins, dirs: ``(B, R, 3)``.
        near, far: floats, tensors ``(B,)`` (one per item, as a DataLoader batches
            them) or ``(B, R)``.
    Returns:
        rgb ``(B, R, 3)``; with ``return_acc`` also acc ``(B, R)``.
    """
    batch, n_rays = origins.shape[:2]
    near_t = _per_ray(near, batch, n_rays, origins.device)
    far_t = _per_ray(far, batch, n_rays, origins.device)
    rays_per_chunk = max(1, chunk // max(batch, 1))
    rgb_parts, acc_parts = [], []
    for start in range(0, n_rays, rays_per_chunk):
        sl = slice(start, start + rays_per_chunk)
        o, d = origins[:, sl], dirs[:, sl]
        points, t = sample_along_rays(o, d, near_t[:, sl], far_t[:, sl], n_samples, stratified, generator,
                                      convention)
        viewdirs = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        rgb, density = field(points, viewdirs)
        rgb_map, acc = volume_render(rgb, density, t, d, white_background, convention)
        rgb_parts.append(rgb_map)
        acc_parts.append(acc)
    rgb_out = torch.cat(rgb_parts, dim=1)
    if return_acc:
        return rgb_out, torch.cat(acc_parts, dim=1)
    return rgb_out


def render_view(field: Field, pose: torch.Tensor, focal, height: int, width: int, **kwargs):
    """Render whole images: ``pose (B, 4, 4)`` -> rgb ``(B, H, W, 3)``.

    Keyword arguments go to :func:`render_rays` (near, far, n_samples, chunk, ...);
    with ``return_acc=True`` also returns acc ``(B, H, W)``. Wrap the call in
    ``torch.no_grad()`` when no gradient is needed: it is what keeps memory small.
    """
    if pose.dim() == 2:
        pose = pose[None]
    batch = pose.shape[0]
    origins, dirs = get_rays(pose, focal, height, width)
    out = render_rays(field, origins.reshape(batch, -1, 3), dirs.reshape(batch, -1, 3), **kwargs)
    if kwargs.get("return_acc"):
        rgb, acc = out
        return rgb.reshape(batch, height, width, 3), acc.reshape(batch, height, width)
    return out.reshape(batch, height, width, 3)


def camera_frustum_lines(pose: torch.Tensor, focal, height: int, width: int, scale: float = 0.3) -> torch.Tensor:
    """Line segments drawing a camera as a pyramid, for a 3D scene plot.

    The apex is the camera centre; the base is the image rectangle placed at depth
    ``scale``; a small triangle above the top edge marks the camera's up direction.

    Args:
        pose: ``(4, 4)`` or ``(B, 4, 4)``.
    Returns:
        ``(..., 10, 2, 3)`` segment end points in world coordinates.
    """
    pose = pose.float()
    focal = float(focal)
    half_w, half_h = 0.5 * width / focal, 0.5 * height / focal
    corners = torch.tensor(
        [[-half_w, half_h, -1.0], [half_w, half_h, -1.0], [half_w, -half_h, -1.0], [-half_w, -half_h, -1.0]],
        device=pose.device,
    ) * scale
    apex = torch.zeros(3, device=pose.device)
    tip = torch.tensor([0.0, half_h * 1.5, -1.0], device=pose.device) * scale
    segments = [(apex, c) for c in corners]
    segments += [(corners[k], corners[(k + 1) % 4]) for k in range(4)]
    segments += [(corners[0], tip), (tip, corners[1])]
    local = torch.stack([torch.stack(s) for s in segments])  # (10, 2, 3) in camera space
    rotation, centre = pose[..., :3, :3], pose[..., :3, 3]
    world = torch.einsum("...ij,lkj->...lki", rotation, local) + centre[..., None, None, :]
    return world


def focal_from_angle(camera_angle_x: float, width: int) -> float:
    """Focal length in pixels from the horizontal field of view (radians)."""
    return 0.5 * width / math.tan(0.5 * camera_angle_x)

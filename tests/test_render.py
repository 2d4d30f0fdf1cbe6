import math

import pytest
import torch

from transinr.render import (
    camera_frustum_lines,
    focal_from_angle,
    get_rays,
    pose_spherical,
    render_rays,
    render_view,
    sample_along_rays,
    volume_render,
)


def translation_pose(x, y, z):
    pose = torch.eye(4)
    pose[:3, 3] = torch.tensor([x, y, z])
    return pose


def test_get_rays_matches_hand_computed_rays():
    # Identity rotation at (0, 0, 4): the camera looks down -z towards the origin.
    pose = translation_pose(0.0, 0.0, 4.0)
    focal, height, width = 2.0, 4, 4
    origins, dirs = get_rays(pose[None], focal, height, width)
    assert origins.shape == dirs.shape == (1, 4, 4, 3)
    assert torch.allclose(origins, torch.tensor([0.0, 0.0, 4.0]).expand(1, 4, 4, 3))
    # Top-left pixel centre (0.5, 0.5): x = (0.5 - 2) / 2 = -0.75, y = +0.75 (rows go down).
    assert torch.allclose(dirs[0, 0, 0], torch.tensor([-0.75, 0.75, -1.0]))
    assert torch.allclose(dirs[0, 3, 3], torch.tensor([0.75, -0.75, -1.0]))
    assert torch.allclose(dirs[0, 1, 2], torch.tensor([0.25, 0.25, -1.0]))
    # The four central pixels average to the optical axis.
    assert torch.allclose(dirs[0, 1:3, 1:3].mean(dim=(0, 1)), torch.tensor([0.0, 0.0, -1.0]))


def test_get_rays_rotates_directions_and_takes_per_camera_focal():
    pose = pose_spherical(0.0, 0.0, 4.0)  # camera on +x, looking at the origin
    _, dirs = get_rays(torch.stack([pose, pose]), torch.tensor([2.0, 4.0]), 2, 2)
    # Centre of the image is between the 4 pixels; their mean points along -x.
    mean_dir = dirs[0].mean(dim=(0, 1))
    assert torch.allclose(mean_dir, torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6)
    # Top-left pixel: camera x (right) is +y world, camera y (up) is +z world.
    assert torch.allclose(dirs[0, 0, 0], torch.tensor([-1.0, -0.25, 0.25]), atol=1e-6)
    assert torch.allclose(dirs[1, 0, 0], torch.tensor([-1.0, -0.125, 0.125]), atol=1e-6)


@pytest.mark.parametrize("azimuth,elevation", [(0, 0), (37, 20), (200, -60), (90, 90), (10, -90)])
def test_pose_spherical_is_a_rigid_look_at(azimuth, elevation):
    pose = pose_spherical(azimuth, elevation, 3.0)
    rotation, centre = pose[:3, :3], pose[:3, 3]
    assert torch.allclose(rotation.T @ rotation, torch.eye(3), atol=1e-5)
    assert torch.det(rotation) == pytest.approx(1.0, abs=1e-5)
    assert centre.norm() == pytest.approx(3.0, abs=1e-5)
    # Looking at the origin: -z axis points from the camera to the origin.
    assert torch.allclose(-rotation[:, 2], -centre / centre.norm(), atol=1e-5)
    # Level horizon: camera x axis is horizontal; camera y has a non-negative z part.
    assert abs(rotation[2, 0]) < 1e-6
    assert rotation[2, 1] >= -1e-6
    el = math.radians(elevation)
    assert centre[2] == pytest.approx(3.0 * math.sin(el), abs=1e-5)


def test_pose_spherical_batches():
    poses = pose_spherical(torch.tensor([0.0, 90.0, 180.0]), 30.0, 4.0)
    assert poses.shape == (3, 4, 4)
    assert torch.allclose(poses[1], pose_spherical(90.0, 30.0, 4.0))


def test_sample_along_rays_deterministic_and_stratified():
    origins = torch.zeros(5, 3)
    dirs = torch.tensor([0.0, 0.0, -1.0]).expand(5, 3)
    points, t = sample_along_rays(origins, dirs, 2.0, 6.0, 9, stratified=False)
    assert points.shape == (5, 9, 3) and t.shape == (5, 9)
    assert torch.allclose(t[0], torch.linspace(2, 6, 9))
    assert torch.allclose(points[..., 2], -t)
    generator = torch.Generator().manual_seed(0)
    _, t_strat = sample_along_rays(origins, dirs, 2.0, 6.0, 9, stratified=True, generator=generator,
                                   convention="nerf")
    assert (t_strat >= 2.0).all() and (t_strat <= 6.0).all()
    assert (t_strat[:, 1:] >= t_strat[:, :-1]).all()
    assert not torch.allclose(t_strat, t)
    # NeRF: each stratified sample stays within half a step of its grid point.
    assert ((t_strat - t).abs() <= 0.25 + 1e-6).all()
    # learnit: each sample moves forward by less than one step (0.5 here).
    _, t_learnit = sample_along_rays(origins, dirs, 2.0, 6.0, 9, stratified=True,
                                     generator=torch.Generator().manual_seed(0))
    shift = t_learnit - t
    assert (shift >= 0).all() and (shift <= 0.5 + 1e-6).all() and (shift > 0.25).any()


def learnit_reference(rgb, density, z):
    """Tancik et al.'s learnit quadrature, written from its equations (float64)."""
    dists = torch.cat([z[..., 1:] - z[..., :-1], torch.full_like(z[..., :1], 1e-3)], dim=-1)
    alpha = 1 - torch.exp(-density * dists)
    out = torch.zeros(*density.shape[:-1], 3, dtype=torch.float64)
    acc = torch.zeros(density.shape[:-1], dtype=torch.float64)
    survive = torch.ones(density.shape[:-1], dtype=torch.float64)
    for k in range(density.shape[-1]):
        weight = alpha[..., k] * survive
        out += weight[..., None] * rgb[..., k, :]
        acc += weight
        survive = survive * torch.clamp(1 - alpha[..., k] + 1e-10, max=1.0)
    return out + (1 - acc)[..., None], acc


def test_learnit_convention_matches_its_equations_and_ignores_direction_length():
    generator = torch.Generator().manual_seed(3)
    z = torch.sort(torch.rand(5, 16, generator=generator, dtype=torch.float64) * 4 + 2).values
    rgb = torch.rand(5, 16, 3, generator=generator, dtype=torch.float64)
    density = torch.rand(5, 16, generator=generator, dtype=torch.float64) * 3
    dirs = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    expected_rgb, expected_acc = learnit_reference(rgb, density, z)
    rgb_map, acc = volume_render(rgb, density, z, dirs, convention="learnit")
    assert torch.allclose(rgb_map, expected_rgb, atol=1e-12, rtol=0)
    assert torch.allclose(acc, expected_acc, atol=1e-12, rtol=0)
    longer, _ = volume_render(rgb, density, z, 3 * dirs, convention="learnit")
    assert torch.equal(longer, rgb_map)
    nerf, _ = volume_render(rgb, density, z, dirs, convention="nerf")
    assert (nerf - rgb_map).abs().max() > 1e-3  # the two quadratures are different functions
    with pytest.raises(ValueError, match="learnit"):
        volume_render(rgb, density, z, dirs, convention="blender")


def test_volume_render_empty_field_is_white():
    t = torch.linspace(2, 6, 32).expand(4, 32)
    rgb = torch.rand(4, 32, 3)
    density = torch.zeros(4, 32)
    dirs = torch.tensor([0.0, 0.0, -1.0]).expand(4, 3)
    rgb_map, acc = volume_render(rgb, density, t, dirs, white_background=True)
    assert torch.allclose(acc, torch.zeros(4))
    assert torch.allclose(rgb_map, torch.ones(4, 3))
    black, _ = volume_render(rgb, density, t, dirs, white_background=False)
    assert torch.allclose(black, torch.zeros(4, 3))


def test_volume_render_opaque_field_gives_its_colour():
    t = torch.linspace(2, 6, 32).expand(4, 32)
    colour = torch.tensor([0.2, 0.5, 0.9])
    rgb = colour.expand(4, 32, 3)
    density = torch.full((4, 32), 1e3)
    dirs = torch.tensor([0.0, 0.0, -1.0]).expand(4, 3)
    rgb_map, acc = volume_render(rgb, density, t, dirs)
    assert torch.allclose(acc, torch.ones(4), atol=1e-5)
    assert torch.allclose(rgb_map, colour.expand(4, 3), atol=1e-5)


def test_nerf_convention_uses_direction_norm():
    # A thin half-transparent layer: doubling the direction length doubles the path.
    t = torch.tensor([[2.0, 2.1, 6.0]])
    density = torch.tensor([[1.0, 0.0, 0.0]])
    rgb = torch.zeros(1, 3, 3)
    _, acc_unit = volume_render(rgb, density, t, torch.tensor([[0.0, 0.0, -1.0]]), convention="nerf")
    _, acc_long = volume_render(rgb, density, t, torch.tensor([[0.0, 0.0, -2.0]]), convention="nerf")
    assert acc_unit.item() == pytest.approx(1 - math.exp(-0.1), rel=1e-4)
    assert acc_long.item() == pytest.approx(1 - math.exp(-0.2), rel=1e-4)


def sphere_field(points, viewdirs):
    """Opaque red unit sphere: density 1e3 inside radius 1, 0 outside."""
    inside = points.norm(dim=-1) < 1.0
    density = inside.float() * 1e3
    rgb = torch.zeros(*points.shape[:-1], 3)
    rgb[..., 0] = 1.0
    return rgb, density


def test_camera_sees_unit_sphere_where_it_should():
    size, radius = 32, 4.0
    focal = focal_from_angle(0.6911, size)
    pose = pose_spherical(30.0, 25.0, radius)
    rgb, acc = render_view(sphere_field, pose, focal, size, size, n_samples=256, return_acc=True)
    assert rgb.shape == (1, size, size, 3) and acc.shape == (1, size, size)
    # Analytic silhouette: a ray hits the sphere iff its angle to the optical axis is
    # below asin(1 / radius).
    _, dirs = get_rays(pose[None], focal, size, size)
    unit = dirs / dirs.norm(dim=-1, keepdim=True)
    cos_to_axis = (unit * -pose[:3, 2]).sum(dim=-1)
    expected = cos_to_axis > math.cos(math.asin(1.0 / radius))
    seen = acc > 0.5
    mismatch = (seen != expected).float().sum().item()
    # Allow a handful of pixels on the rim (sampling along the ray is discrete).
    assert mismatch <= 0.02 * expected.sum().item()
    assert expected.sum() > 50
    # Seen pixels are red, the rest white.
    assert torch.allclose(rgb[seen], torch.tensor([1.0, 0.0, 0.0]).expand_as(rgb[seen]), atol=1e-3)
    assert torch.allclose(rgb[~seen & ~expected], torch.ones(3).expand_as(rgb[~seen & ~expected]), atol=1e-3)


def test_chunked_render_equals_unchunked():
    generator = torch.Generator().manual_seed(1)
    weights = torch.randn(2, 3, 4, generator=generator)

    def field(points, viewdirs):  # a different smooth field per batch item
        h = torch.einsum("brsi,bio->brso", points, weights)
        return torch.sigmoid(h[..., :3]), torch.relu(h[..., 3])

    origins, dirs = get_rays(pose_spherical(torch.tensor([10.0, 80.0]), 20.0, 4.0), 20.0, 6, 7)
    origins, dirs = origins.reshape(2, -1, 3), dirs.reshape(2, -1, 3)
    whole = render_rays(field, origins, dirs, n_samples=16, chunk=10_000)
    chunked = render_rays(field, origins, dirs, n_samples=16, chunk=6)
    assert whole.shape == (2, 42, 3)
    assert torch.allclose(whole, chunked, atol=1e-6)
    # Per-item depth bounds (B,), as a DataLoader batches them, equal the float ones.
    per_item = render_rays(field, origins, dirs, near=torch.tensor([2.0, 2.0]), far=torch.tensor([6.0, 6.0]),
                           n_samples=16, chunk=6)
    assert torch.allclose(whole, per_item, atol=1e-6)


def test_render_rays_passes_unit_viewdirs_and_batch_shapes():
    seen = {}

    def field(points, viewdirs):
        seen["points"], seen["viewdirs"] = points.shape, viewdirs
        return torch.ones(*points.shape[:-1], 3), torch.zeros(points.shape[:-1])

    origins, dirs = torch.zeros(3, 5, 3), torch.randn(3, 5, 3)
    out = render_rays(field, origins, dirs, n_samples=8, stratified=True)
    assert out.shape == (3, 5, 3)
    assert seen["points"] == (3, 5, 8, 3)
    assert torch.allclose(seen["viewdirs"].norm(dim=-1), torch.ones(3, 5))


def test_camera_frustum_lines_start_at_camera_centre():
    pose = pose_spherical(45.0, 30.0, 4.0)
    lines = camera_frustum_lines(pose, 50.0, 64, 64, scale=0.5)
    assert lines.shape == (10, 2, 3)
    assert torch.allclose(lines[:4, 0], pose[:3, 3].expand(4, 3), atol=1e-6)
    # Image-plane corners lie 0.5 in front of the camera along its viewing axis.
    depth = ((lines[:4, 1] - pose[:3, 3]) * -pose[:3, 2]).sum(-1)
    assert torch.allclose(depth, torch.full((4,), 0.5), atol=1e-5)
    assert camera_frustum_lines(torch.stack([pose, pose]), 50.0, 64, 64).shape == (2, 10, 2, 3)

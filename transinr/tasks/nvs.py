"""Novel view synthesis: posed views of an object in, a NeRF of it out.

A batch is a dict from :class:`transinr.data.views.PosedViews` (B objects, V support
views, H × W pixels)::

    support_rgb (B, V, 3, H, W)   support_rays_o / _d (B, V, H, W, 3)
    training:   query_rgb (B, R, 3)            query_rays_o / _d (B, R, 3)
    evaluation: query_rgb (B, Q, 3, H, W)      query_rays_o / _d (B, Q, H, W, 3)
    query_poses (B, Q, 4, 4)   focal (B,)   near (B,)   far (B,)

The meta-learner reads the support views and writes one NeRF per object; the loss is
the MSE of volume-rendered query rays (stratified samples, white background).
Held-out PSNR is the mean over an object's held-out views of each view's PSNR.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from ..distributed import unwrap
from ..metrics import mse_to_psnr, psnr_per_item
from ..render import pose_spherical, render_rays, render_view
from ..viz import save_figure, to_numpy_image

FIGURE_OBJECTS = 4  # rows of the samples figure (at most)
FIGURE_NOVEL_VIEWS = 3  # held-out views per row
PROBE_OBJECTS = 8  # held-out objects the training-time input-dependence probe swaps views between
PROBE_VIEWS = 2  # held-out views of each that it renders
TURNTABLE_ELEVATION = 30.0  # degrees
GIF_MIN_SIZE = 128  # small views are enlarged (nearest neighbour) in the GIF


# -- rendering a generated NeRF ------------------------------------------------------


def hyponet_of(model):
    """The NeRF recipe of a meta-learner (through DDP / compile wrappers), or ``model`` if it is one."""
    model = unwrap(model)
    return getattr(model, "hyponet", model)


def render_convention_of(hyponet) -> str:
    """The volume-rendering quadrature a NeRF hyponet was built for (learnit's by default)."""
    return getattr(hyponet, "render_convention", "learnit")


def nerf_field(hyponet, weights: list[torch.Tensor]):
    """A radiance field for :func:`transinr.render.render_rays` from B NeRFs.

    weights: per layer (B, in+1, out). The field maps points (B, r, S, 3) and unit
    view directions (B, r, 3) to rgb (B, r, S, 3) and density (B, r, S).
    """

    def field(points: torch.Tensor, viewdirs: torch.Tensor):
        extra = {}
        if getattr(hyponet, "use_viewdirs", False):
            extra["viewdirs"] = viewdirs[..., None, :].expand_as(points)
        out = hyponet(points, weights, **extra)
        return out[..., :3], out[..., 3]

    return field


def render_weights(hyponet, weights: list[torch.Tensor], origins: torch.Tensor, directions: torch.Tensor,
                   near, far, n_samples: int, stratified: bool = False, chunk: int = 4096,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Render rays (B, R, 3) through B generated NeRFs → colours (B, R, 3), with the
    quadrature the hyponet's densities are meant for."""
    return render_rays(nerf_field(hyponet, weights), origins, directions, near=near, far=far,
                       n_samples=n_samples, stratified=stratified, chunk=chunk, generator=generator,
                       convention=render_convention_of(hyponet))


def render_novel_view(model, weights: list[torch.Tensor], pose: torch.Tensor, focal, height: int, width: int,
                      near=2.0, far=6.0, n_samples: int = 128, chunk: int = 4096) -> torch.Tensor:
    """Render B NeRFs from camera poses → images (B, 3, H, W).

    model: a meta-learner (its ``.hyponet`` is used) or a hyponet itself.
    pose: (B, 4, 4) camera-to-world (or one (4, 4) for every object).
    focal: pixels, a float or (B,). Deterministic, evenly spaced samples.
    """
    hyponet = hyponet_of(model)
    batch = weights[0].shape[0]
    if pose.dim() == 2:
        pose = pose.expand(batch, 4, 4)
    with torch.no_grad():
        image = render_view(nerf_field(hyponet, weights), pose.to(weights[0].device), focal, height, width,
                            near=near, far=far, n_samples=n_samples, chunk=chunk,
                            convention=render_convention_of(hyponet))
    return image.permute(0, 3, 1, 2)


def camera_on_orbit(pose: torch.Tensor) -> tuple[float, float, float]:
    """(azimuth°, elevation°, radius) of a camera centre, in :func:`pose_spherical`'s terms."""
    x, y, z = pose[:3, 3].tolist()
    radius = math.sqrt(x * x + y * y + z * z)
    return math.degrees(math.atan2(y, x)), math.degrees(math.asin(z / radius)), radius


def turntable_poses(start_pose: torch.Tensor, n_frames: int,
                    elevation: float = TURNTABLE_ELEVATION) -> torch.Tensor:
    """(n_frames, 4, 4) cameras circling the object at the distance of ``start_pose``,
    starting from its azimuth."""
    azimuth, _, radius = camera_on_orbit(start_pose)
    azimuths = azimuth + torch.arange(n_frames, dtype=torch.float32) * (360.0 / n_frames)
    return pose_spherical(azimuths, torch.full_like(azimuths, elevation), radius)


# -- figures ---------------------------------------------------------------------------


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] → (H, W, 3) uint8."""
    return (to_numpy_image(image) * 255).round().astype(np.uint8)


def views_figure(rows: list[list[tuple[torch.Tensor, str]]], column_labels: list[str], scale: float = 1.3):
    """A grid of (3, H, W) images, one list of (image, title) per row."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(scale * n_cols, scale * n_rows + 0.3), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                image, title = row[c]
                ax.imshow(_to_uint8(image), interpolation="nearest")
                if title:
                    ax.set_title(title, fontsize=7)
            else:
                ax.axis("off")
            if r == n_rows - 1:
                ax.set_xlabel(column_labels[c], fontsize=7)
    fig.tight_layout()
    return fig


def write_gif(frames: list[np.ndarray], path: Path, seconds_per_turn: float = 4.0) -> Path:
    """Frames (H, W, 3) uint8 → a looping GIF."""
    images = [Image.fromarray(frame) for frame in frames]
    factor = max(1, math.ceil(GIF_MIN_SIZE / images[0].height))
    if factor > 1:
        images = [im.resize((im.width * factor, im.height * factor), Image.NEAREST) for im in images]
    duration = max(20, round(1000 * seconds_per_turn / len(images)))
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
    return path


# -- scoring ----------------------------------------------------------------------------


def view_psnr(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Rendered and true views (B, Q, 3, H, W) → (B, Q) each view's PSNR."""
    return psnr_per_item(rendered.flatten(0, 1), target.flatten(0, 1)).view(target.shape[:2])


def object_psnr(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Rendered and true held-out views (B, Q, 3, H, W) → (B,) each object's PSNR: the mean
    over its Q views of each view's PSNR.

    The object is the unit of a held-out score, so the standard error of a mean over
    objects (evaluate.evaluate_split) counts objects, not views: the views of one object
    are not independent samples.
    """
    return view_psnr(rendered, target).mean(1)


# -- the task --------------------------------------------------------------------------


class ViewSynthesis:
    """The training-loop contract for posed views → NeRF (see :mod:`transinr.train`)."""

    kind = "nvs"

    def __init__(self, config):
        self.config = config

    # data

    def datasets(self):
        from ..data.views import build_view_dataset

        return build_view_dataset(self.config, "train"), build_view_dataset(self.config, "test")

    def image_size(self, dataset) -> int:
        size = getattr(dataset, "image_size", None)
        if size is None:
            with torch.random.fork_rng():  # reading an item must not shift the run's RNG
                size = dataset[0]["support_rgb"].shape[-1]
        return int(size)

    def to_device(self, batch: dict, device) -> dict:
        return {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
                for key, value in batch.items()}

    def batch_of(self, dataset, indices, device="cpu") -> dict:
        """Items ``indices`` of ``dataset`` collated into one batch on ``device``."""
        return self.to_device(default_collate([dataset[i] for i in indices]), device)

    # weights

    def generate(self, model, batch: dict) -> list[torch.Tensor]:
        """One forward pass of the meta-learner → per-layer NeRF weights (B, in+1, out)."""
        return model(batch["support_rgb"], batch["support_rays_o"], batch["support_rays_d"])

    def optimise(self, model, batch: dict, weights: list[torch.Tensor], steps: int | None = None,
                 progress: bool | None = None) -> list[torch.Tensor]:
        """Test-time optimisation of ``weights`` on the batch's support views (``nvs.tto_*``)."""
        from ..tto import optimise_on_support_views, support_rays

        nvs = self.config.nvs
        origins, directions, colours = support_rays(batch)
        return optimise_on_support_views(
            hyponet_of(model), weights, origins, directions, colours, batch["near"], batch["far"],
            steps=nvs.tto_steps if steps is None else steps, lr=nvs.tto_lr, n_rays=nvs.tto_rays,
            n_samples=nvs.n_samples, objects_per_pass=nvs.tto_batch, seed=self.config.train.seed,
            progress=progress)

    def evaluation_weights(self, model, batch: dict) -> list[torch.Tensor]:
        """Generated weights, refined by TTO when ``nvs.evaluate_with_tto`` is set."""
        with torch.no_grad():
            weights = self.generate(model, batch)
        if self.config.nvs.evaluate_with_tto and self.config.nvs.tto_steps > 0:
            weights = self.optimise(model, batch, weights)
        return weights

    # rendering

    def render_query_views(self, model, batch: dict, weights: list[torch.Tensor]) -> torch.Tensor:
        """Render every query view of an evaluation batch → (B, Q, 3, H, W)."""
        nvs = self.config.nvs
        batch_size, n_views, height, width = batch["query_rays_o"].shape[:4]
        origins = batch["query_rays_o"].reshape(batch_size, -1, 3)
        directions = batch["query_rays_d"].reshape(batch_size, -1, 3)
        with torch.no_grad():
            rgb = render_weights(hyponet_of(model), weights, origins, directions, batch["near"], batch["far"],
                                 nvs.n_samples, chunk=nvs.render_chunk)
        return rgb.view(batch_size, n_views, height, width, 3).permute(0, 1, 4, 2, 3)

    # the training-loop contract

    def training_loss(self, model, batch: dict, epoch: int):
        """MSE of the query rays rendered with stratified samples → (loss, float PSNR)."""
        weights = self.generate(model, batch)
        origins, directions = batch["query_rays_o"], batch["query_rays_d"]  # (B, R, 3)
        # Training renders the few sampled rays in one chunk.
        rendered = render_weights(hyponet_of(model), weights, origins, directions, batch["near"],
                                  batch["far"], self.config.nvs.n_samples, stratified=True,
                                  chunk=origins.shape[0] * origins.shape[1])
        loss = F.mse_loss(rendered, batch["query_rgb"])
        return loss, float(mse_to_psnr(loss.detach()))

    def psnr(self, model, batch: dict) -> torch.Tensor:
        """(B,) each object's held-out PSNR (:func:`object_psnr`)."""
        weights = self.evaluation_weights(model, batch)
        return object_psnr(self.render_query_views(model, batch, weights), batch["query_rgb"])

    def evaluation_settings(self) -> dict:
        """What a held-out score depends on beyond the checkpoint, for the results file."""
        nvs = self.config.nvs
        tto = nvs.tto_steps if nvs.evaluate_with_tto else 0
        return {"tto_steps": tto, "tto_lr": nvs.tto_lr if tto else None,
                "tto_rays": nvs.tto_rays if tto else None, "n_samples": nvs.n_samples,
                "eval_views": nvs.eval_views}

    def probe_batch(self, dataset, device) -> dict:
        """The fixed batch the training-time probe reads: the first ``PROBE_OBJECTS`` held-out
        objects with ``PROBE_VIEWS`` of their held-out views (built once per run)."""
        n_objects = min(PROBE_OBJECTS, len(dataset))
        if n_objects < 2:
            raise ValueError(f"the input-dependence probe needs two held-out objects; the test split has {n_objects}")
        batch = self.batch_of(dataset, range(n_objects), device)
        for key in ("query_rgb", "query_rays_o", "query_rays_d", "query_poses"):
            batch[key] = batch[key][:, :PROBE_VIEWS]
        return batch

    @torch.no_grad()
    def input_dependence_probe(self, model, batch: dict) -> dict:
        """Does the model read its views yet? :func:`transinr.analysis.input_dependence` on
        ``batch`` (:meth:`probe_batch`), as means over objects: {"render_change",
        "truth_change" (RMS, [0, 1] units), "dependence" (their ratio: 1 when the renders move
        as far as the truth does, 0 for a model that ignores its input), "own_psnr",
        "other_psnr" (dB)}; for a model with weight tokens also "data_attention": per
        Transformer layer, the share of the weight tokens' attention on the data tokens.

        Logged during training by ``train.probe_every`` (the same objects and cameras each
        time, so successive values compare).
        """
        from ..analysis import input_dependence, weight_token_attention

        was_training = model.training
        model.eval()
        result = input_dependence(self, model, batch)
        render_change, truth_change = float(result["render_change"].mean()), float(result["truth_change"].mean())
        figures = {"render_change": render_change, "truth_change": truth_change,
                   "dependence": render_change / truth_change,
                   "own_psnr": float(result["own"].mean()), "other_psnr": float(result["other"].mean())}
        if hasattr(unwrap(model), "weight_tokens"):
            attention = weight_token_attention(unwrap(model), batch["support_rgb"], batch["support_rays_o"],
                                               batch["support_rays_d"])
            figures["data_attention"] = (1 - attention.to_weight_tokens.mean(dim=(0, 2, 3))).tolist()  # (T,)
        model.train(was_training)
        return figures

    # baselines and figures

    @staticmethod
    def blank_white_psnr(dataset, max_items: int | None = None) -> float:
        """Mean held-out PSNR of rendering a blank white image for every query view.

        The floor on this data: the views are mostly white background, so it is far
        from 0 dB; a model must beat it to show it has seen the object.
        """
        n = len(dataset) if max_items is None else min(max_items, len(dataset))
        scores = []
        for index in tqdm(range(n), desc="blank-white baseline", leave=False, disable=None):
            target = dataset[index]["query_rgb"]  # (Q, 3, H, W)
            scores.append(psnr_per_item(torch.ones_like(target), target).mean())
        return torch.stack(scores).mean().item()

    @torch.no_grad()
    def write_samples(self, model, dataset, device, run_dir) -> Path:
        """Support view(s), ground truth and rendered held-out views of a few test objects
        (``samples.png``), and a turntable GIF of the first (``turntable.gif``); with
        ``nvs.evaluate_with_tto`` the names end in ``_tto``. Returns the PNG's path."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        model.eval()
        nvs = self.config.nvs
        n_objects = min(FIGURE_OBJECTS, self.config.train.figure_images, len(dataset))
        batch = self.batch_of(dataset, range(n_objects), device)
        weights = self.evaluation_weights(model, batch)
        n_support = batch["support_rgb"].shape[1]
        n_novel = min(FIGURE_NOVEL_VIEWS, batch["query_rgb"].shape[1])
        height, width = batch["query_rgb"].shape[-2:]
        novel = torch.stack([
            render_novel_view(model, weights, batch["query_poses"][:, k], batch["focal"], height, width,
                              batch["near"], batch["far"], nvs.n_samples, nvs.render_chunk)
            for k in range(n_novel)], dim=1)  # (B, n_novel, 3, H, W)
        truth = batch["query_rgb"][:, :n_novel]
        scores = view_psnr(novel, truth)
        rows = []
        for b in range(n_objects):
            name = batch["object_id"][b]
            row = [(batch["support_rgb"][b, v], name if v == 0 else "") for v in range(n_support)]
            for k in range(n_novel):
                row += [(truth[b, k], ""), (novel[b, k], f"{scores[b, k]:.1f} dB")]
            rows.append(row)
        labels = [f"support {v + 1}" for v in range(n_support)]
        for k in range(n_novel):
            labels += [f"view {k + 1} truth", f"view {k + 1} rendered"]
        suffix = "_tto" if nvs.evaluate_with_tto and nvs.tto_steps > 0 else ""
        path = save_figure(views_figure(rows, labels), run_dir / f"samples{suffix}.png")
        self.write_turntable(model, [w[:1] for w in weights], batch, run_dir / f"turntable{suffix}.gif")
        return path

    @torch.no_grad()
    def write_turntable(self, model, weights: list[torch.Tensor], batch: dict, path: Path) -> Path:
        """A GIF of object 0 of ``batch`` seen from a circling camera, its support view beside it."""
        nvs = self.config.nvs
        height, width = batch["support_rgb"].shape[-2:]
        poses = turntable_poses(batch["support_poses"][0, 0].cpu(), nvs.turntable_frames)
        support = _to_uint8(batch["support_rgb"][0, 0])
        frames = []
        for pose in tqdm(poses, desc="turntable", leave=False, disable=None):
            image = render_novel_view(model, weights, pose, batch["focal"][:1], height, width,
                                      batch["near"][:1], batch["far"][:1], nvs.n_samples, nvs.render_chunk)
            frames.append(np.concatenate([support, _to_uint8(image[0])], axis=1))
        return write_gif(frames, path)

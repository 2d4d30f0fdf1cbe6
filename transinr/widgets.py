"""What the notebooks' widgets do, as plain functions that return arrays or figures.

ipywidgets swallows exceptions raised inside callbacks, so every callback here is a
library function with its own tests; the notebooks only wire sliders to them.
"""

from __future__ import annotations

import numpy as np
import torch

from . import analysis
from .runtime import smoke_mode  # noqa: F401  (the notebooks call widgets.smoke_mode())
from .tasks.image import render_image
from .viz import to_numpy_image


# (3, H, W) in [0, 1] → (H, W, 3) float array in [0, 1]; the notebooks call it by this name.
image_to_numpy = to_numpy_image


@torch.no_grad()
def reconstruct(model, image: torch.Tensor, scale: int = 1) -> dict:
    """One image through Trans-INR: the generated INR rendered at the input size and at
    ``scale``× it, and its PSNR. image: (3, H, W)."""
    from .metrics import psnr_per_item

    model.eval()
    images = image.unsqueeze(0)
    weights = model(images)
    size = image.shape[-1]
    native = render_image(model.hyponet, weights, size, size)
    upscaled = render_image(model.hyponet, weights, size * scale, size * scale)
    return {"input": image_to_numpy(image), "generated": image_to_numpy(native[0]),
            "upscaled": image_to_numpy(upscaled[0]),
            "psnr": psnr_per_item(native, images).item()}


def image_from_bytes(data: bytes, resolution: int, name: str = "upload") -> torch.Tensor:
    """An uploaded file (any format Pillow reads) → (3, R, R) centre-cropped, on white.

    A file that is no image raises :class:`~transinr.data.errors.CorruptImageError`
    naming ``name`` (the file as the user picked it) and what was expected."""
    import tempfile
    from pathlib import Path

    from .data.errors import CorruptImageError
    from .data.image_io import center_crop, load_rgb, resize_shorter_side, to_tensor

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            pixels = load_rgb(path, target_size=resolution)
        except CorruptImageError as error:
            # The temporary path means nothing to the user: name their file instead.
            raise CorruptImageError(f"cannot use {name!r}: {error.reason}; expected an image file "
                                    f"(PNG, JPEG, GIF, BMP or WebP)", path=name, reason=error.reason) from None
    return to_tensor(center_crop(resize_shorter_side(pixels, resolution), resolution))


@torch.no_grad()
def attention_overlay(model, image: torch.Tensor, inr_layer: int, group: int | None = None,
                      transformer_layer: int = -1, head: int | None = None) -> np.ndarray:
    """Attention of one weight token (or the mean over a layer's groups / heads) over an
    image, upsampled to the image's pixels: (H, W) array summing to the token's total
    attention on data tokens."""
    result = analysis.weight_token_attention(model, image.unsqueeze(0))
    maps = result.for_layer(inr_layer)[0, transformer_layer]  # (heads, g, gh, gw)
    maps = maps.mean(0) if head is None else maps[head]
    maps = maps.mean(0) if group is None else maps[group]
    return analysis.attention_on_pixels(model.tokenizer, maps.unsqueeze(0))[0].cpu().numpy()


# --------------------------------------------------------------------------------------
# Picking an image: by name (search box and dropdown) or by index (slider)
# --------------------------------------------------------------------------------------

def html_escape(text: str) -> str:
    import html

    return html.escape(str(text))


def image_labels(dataset) -> list[str]:
    """One label per image: its name when the dataset has names (the emoji set's
    ``names``, underscores read as spaces), else its index."""
    names = getattr(dataset, "names", None)
    if names is None:
        return [f"image {i}" for i in range(len(dataset))]
    return [f"{str(name).replace('_', ' ')} (#{i})" for i, name in enumerate(names)]


def matching_images(labels: list[str], query: str) -> list[tuple[str, int]]:
    """(label, index) of every image whose label holds every word of ``query``, in any
    order and case ("red heart" finds "heart red" too); all of them for an empty query."""
    words = query.lower().replace("_", " ").split()
    return [(label, index) for index, label in enumerate(labels)
            if all(word in label.lower() for word in words)]


class ImagePicker:
    """Pick an image of a dataset by name or by index: a search box filters a dropdown of
    names, and a slider wide enough to reach each of hundreds of images; the three stay
    in step. ``index`` (the slider) is the one value the explorers listen to."""

    def __init__(self, dataset, description: str = "image"):
        import ipywidgets as w

        self.labels = image_labels(dataset)
        style = {"description_width": "initial"}  # descriptions in full, never cut off
        self.index = w.IntSlider(0, 0, len(dataset) - 1, description=description, continuous_update=False,
                                 layout=w.Layout(width="560px"), style=style)
        self.search = w.Text(value="", placeholder="part of a name, e.g. heart", description="search",
                             continuous_update=True, layout=w.Layout(width="280px"), style=style)
        self.choice = w.Dropdown(options=matching_images(self.labels, ""), value=0, description="name",
                                 layout=w.Layout(width="380px"), style=style)
        self.matches = w.HTML(f"{len(self.labels)} images")
        self.search.observe(self._on_search, names="value")
        self.choice.observe(self._on_choice, names="value")
        self.index.observe(self._on_index, names="value")
        self.widget = w.VBox([w.HBox([self.search, self.choice, self.matches]), self.index])

    def _on_search(self, change) -> None:
        found = matching_images(self.labels, change["new"])
        if not found:  # keep the last list: an empty dropdown could pick nothing
            self.matches.value = f"<span style='color:#b00'>no name holds “{html_escape(change['new'])}”</span>"
            return
        self.matches.value = f"{len(found)} of {len(self.labels)} images"
        # The dropdown keeps its value when it is still listed, else moves to the first match
        # (and _on_choice then moves the slider).
        self.choice.options = found

    def _on_choice(self, change) -> None:
        if change["new"] is not None:
            self.index.value = change["new"]

    def _on_index(self, change) -> None:
        listed = {index for _, index in self.choice.options}
        if change["new"] not in listed:  # the slider left the filtered list: show every name again
            self.search.value = ""
        self.choice.value = change["new"]


# --------------------------------------------------------------------------------------
# Explorers: a widget box plus the callback it runs, with the last result kept so a
# notebook can drive a control and assert on what the callback produced.
# --------------------------------------------------------------------------------------

class _Explorer:
    def __init__(self):
        import ipywidgets as w

        self.output = w.Output()
        self.last: dict | None = None

    def _show(self, figure) -> None:
        self.output.clear_output(wait=True)
        with self.output:
            show(figure)


class ImageRegressionExplorer(_Explorer):
    """Pick an image (by name or index, or upload one) and a model; see input, generated
    INR, and 4×. A file that is no image leaves the picture as it was and says why in
    ``message``, inside the widget."""

    def __init__(self, models: dict, dataset, scale: int = 4):
        import ipywidgets as w

        super().__init__()
        self.models, self.dataset, self.scale = models, dataset, scale
        self.picker = ImagePicker(dataset)
        self.index = self.picker.index
        self.model_name = w.Dropdown(options=list(models), description="model",
                                     layout=w.Layout(width="420px"), style={"description_width": "initial"})
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="your image")
        self.message = w.HTML("")
        self.uploaded: torch.Tensor | None = None
        self.index.observe(self._on_index, names="value")
        self.model_name.observe(lambda _: self.update(), names="value")
        self.upload.observe(self._on_upload, names="value")
        self.widget = w.VBox([self.picker.widget, w.HBox([self.model_name, self.upload]), self.message,
                              self.output])
        self.update()

    def _on_index(self, change) -> None:
        self.uploaded = None  # picking a test image leaves the uploaded one
        self.message.value = ""
        self.update()

    def _on_upload(self, change) -> None:
        from .data.errors import CorruptImageError

        files = change["new"]
        if not files:
            return
        if isinstance(files, (list, tuple)):  # ipywidgets 8: a tuple of dicts
            name, content = files[0].get("name", "upload"), files[0]["content"]
        else:  # ipywidgets 7: {name: {"content": ...}}
            name, item = next(iter(files.items()))
            content = item["content"]
        try:
            image = image_from_bytes(bytes(content), self.dataset[0].shape[-1], name)
        except CorruptImageError as error:
            self.message.value = f"<b style='color:#b00'>Upload failed.</b> {html_escape(error)}"
            return
        self.message.value = f"showing your image {html_escape(name)}"
        self.uploaded = image
        self.update()

    def update(self) -> dict:
        import matplotlib.pyplot as plt

        image = self.uploaded if self.uploaded is not None else self.dataset[self.index.value]
        self.last = reconstruct(self.models[self.model_name.value], image, self.scale)
        fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.7))
        for ax, key, title in zip(axes, ("input", "generated", "upscaled"),
                                  ("ground truth", f"INR ({self.last['psnr']:.1f} dB)", f"INR at {self.scale}×")):
            ax.imshow(self.last[key], interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        self._show(fig)
        return self.last


class AttentionExplorer(_Explorer):
    """Pick image, INR layer, group, Transformer layer and head; see where that weight
    token looks."""

    def __init__(self, model, dataset):
        import ipywidgets as w

        super().__init__()
        self.model, self.dataset = model, dataset
        groups = model.weight_tokens.groups
        depth = len(model.transformer.blocks)
        heads = model.transformer.blocks[0].attn.n_heads
        self.picker = ImagePicker(dataset)
        self.index = self.picker.index
        self.inr_layer = w.Dropdown(options=sorted(groups), description="INR layer")
        self.group = w.Dropdown(options=["mean"] + list(range(groups[min(groups)])), description="group")
        self.transformer_layer = w.IntSlider(depth - 1, 0, depth - 1, description="Tr. layer",
                                             continuous_update=False)
        self.head = w.Dropdown(options=["mean"] + list(range(heads)), description="head")
        self.inr_layer.observe(self._on_layer, names="value")
        for control in (self.index, self.group, self.transformer_layer, self.head):
            control.observe(lambda _: self.update(), names="value")
        controls = w.VBox([self.picker.widget, w.HBox([self.inr_layer, self.group]),
                           w.HBox([self.transformer_layer, self.head])])
        self.widget = w.VBox([controls, self.output])
        self.update()

    def _on_layer(self, change) -> None:
        count = self.model.weight_tokens.groups[change["new"]]
        self.group.options = ["mean"] + list(range(count))
        self.group.value = "mean"
        self.update()

    def update(self) -> dict:
        import matplotlib.pyplot as plt

        image = self.dataset[self.index.value]
        group = None if self.group.value == "mean" else self.group.value
        head = None if self.head.value == "mean" else self.head.value
        heat = attention_overlay(self.model, image, self.inr_layer.value, group,
                                 self.transformer_layer.value, head)
        self.last = {"map": heat, "image": image_to_numpy(image)}
        fig, axes = plt.subplots(1, 2, figsize=(5.5, 2.8))
        axes[0].imshow(self.last["image"])
        axes[0].set_title("input", fontsize=9)
        axes[1].imshow(self.last["image"])
        axes[1].imshow(heat, cmap="inferno", alpha=0.65)
        axes[1].set_title(f"attention: {heat.sum():.2f} of the row on the image", fontsize=9)
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        self._show(fig)
        return self.last


# --------------------------------------------------------------------------------------
# Models for the notebooks, and the gradient-step explorer of notebook 04
# --------------------------------------------------------------------------------------

def show(figure) -> None:
    """Display a matplotlib figure in the notebook once, then free it."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(figure)
    plt.close(figure)


def shipped_models(names: dict[str, str] | list[str], device="cpu") -> dict:
    """The shipped pretrained models among ``names`` (label → shipped name, or a list of
    names used as labels), loaded; names without a shipped file are left out, so a
    notebook offers exactly the models that exist. Returns label → model (eval mode)."""
    from .pretrained import load_pretrained

    if not isinstance(names, dict):
        names = {name: name for name in names}
    models = {}
    for label, name in names.items():
        try:
            models[label] = load_pretrained(name, device)[0]
        except FileNotFoundError:
            continue
    return models


def gradient_step_comparison(problem, steps: int, step_size: float | None = None) -> dict:
    """The callback of the K slider: K gradient steps on the last INR layer by autograd
    and by K stacked attention layers, compared (see
    :func:`transinr.analysis.gradient_descent_trajectories`); adds ``figure``."""
    from .figures import gradient_step_figure

    trajectory = analysis.gradient_descent_trajectories(problem, steps, step_size)
    trajectory["figure"] = gradient_step_figure(trajectory)
    return trajectory


class GradientStepExplorer(_Explorer):
    """A slider for K: K steps of gradient descent on the last layer of a generated INR
    (its hidden features frozen), by autograd and by K hand-built attention layers."""

    def __init__(self, problem, max_steps: int = 30, steps: int = 5):
        import ipywidgets as w

        super().__init__()
        self.problem = problem
        # Fixed once, so moving the slider only changes K.
        self.step_size = analysis.stable_step_size(problem.features, problem.targets.shape[-1])
        self.steps = w.IntSlider(min(steps, max_steps), 0, max_steps, description="K",
                                 continuous_update=False)
        self.steps.observe(lambda _: self.update(), names="value")
        self.widget = w.VBox([self.steps, self.output])
        self.update()

    def update(self) -> dict:
        result = gradient_step_comparison(self.problem, self.steps.value, self.step_size)
        figure = result.pop("figure")
        self.last = result
        self._show(figure)
        return self.last

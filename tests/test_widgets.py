"""The notebooks' callbacks and explorers, driven as the notebooks drive them."""

import json

import matplotlib
import numpy as np
import pytest
import torch

from transinr import analysis, figures, widgets
from transinr.config import config_to_dict
from transinr.metrics import psnr_per_item
from transinr.models import build_model
from transinr.tasks.image import render_image

from .helpers import smooth_images, tiny_image_config

matplotlib.use("Agg")
pytest.importorskip("ipywidgets")


class ImageList(list):
    """The smallest dataset an explorer accepts: indexable (3, H, W) images."""


class NamedImages(ImageList):
    """Images with names, as the emoji set has them (underscores between words)."""

    def __init__(self, images, names):
        super().__init__(images)
        self.names = names


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_image_config(), 32).eval()


@pytest.fixture(scope="module")
def learned_init():
    config = tiny_image_config()
    config.model.name = "learned_init"
    config.model.inner_steps = config.model.test_inner_steps = 2
    torch.manual_seed(0)
    return build_model(config, 32).eval()


def write_shipped(model, config, path):
    """A .safetensors file in the shipped format (config and image size in the header)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(config_to_dict(config)), "image_size": "32"})
    return path


# ----------------------------------------------------------------------------- analysis

def test_learned_init_steps_start_at_theta0_and_end_at_the_adapted_weights(learned_init):
    images = smooth_images(3)
    scores = analysis.learned_init_step_psnr(learned_init, images, steps=4)
    assert scores.shape == (5, 3)
    initial = render_image(learned_init.hyponet, learned_init.initial_weights(3), 32, 32)
    assert torch.allclose(scores[0], psnr_per_item(initial, images), atol=1e-4)
    adapted = render_image(learned_init.hyponet, learned_init(images, steps=4), 32, 32)
    assert torch.allclose(scores[-1], psnr_per_item(adapted, images), atol=1e-4)
    assert (scores[-1] > scores[0]).all()  # the inner steps fit the image
    assert analysis.learned_init_step_psnr(learned_init, images).shape == (3, 3)  # test_inner_steps


def test_penultimate_features_times_last_layer_is_the_inr_output(model):
    images = smooth_images(2)
    problem = analysis.last_layer_problem(model, images)
    assert problem.features.shape == (2, 32 * 32, 16) and problem.targets.shape == (2, 1024, 3)
    assert (problem.features >= 0).all()  # after the ReLU
    ones = torch.ones(2, 1024, 1)
    prediction = torch.cat([problem.features, ones], -1) @ problem.generated + problem.out_bias
    rendered = render_image(model.hyponet, model(images), 32, 32)  # (B, 3, H, W)
    assert torch.allclose(prediction, rendered.permute(0, 2, 3, 1).reshape(2, -1, 3), atol=1e-5)
    assert torch.allclose(problem.targets[1, 33], images[1, :, 1, 1])  # row-major pixel order


def test_gradient_trajectories_agree_and_fit_the_image(model):
    problem = analysis.last_layer_problem(model, smooth_images(2))
    result = analysis.gradient_descent_trajectories(problem, steps=6)
    assert result["psnr_autograd"].shape == result["psnr_attention"].shape == (7, 2)
    assert result["max_abs_difference"].shape == (7,)
    assert result["max_abs_difference"].max() < 1e-6
    assert np.allclose(result["psnr_autograd"], result["psnr_attention"], atol=1e-4)
    # The default step is stable: the fit improves at every step, for every image.
    assert (np.diff(result["psnr_autograd"], axis=0) > -1e-4).all()
    assert (result["psnr_autograd"][-1] > result["psnr_autograd"][0] + 0.3).all()
    # A step far past the stable one diverges: the default step size is what keeps it sane.
    wild = analysis.gradient_descent_trajectories(problem, 6, step_size=50 * result["step_size"])
    assert wild["psnr_autograd"][-1].mean() < result["psnr_autograd"][-1].mean()


# ----------------------------------------------------------------------------- widgets

def test_shipped_models_leave_out_missing_files(model, tmp_path):
    path = write_shipped(model, tiny_image_config(), tmp_path / "tiny.safetensors")
    found = widgets.shipped_models({"tiny": str(path), "absent": "no_such_model_anywhere"})
    assert list(found) == ["tiny"]
    image = smooth_images(1)[0]
    assert np.allclose(widgets.reconstruct(found["tiny"], image)["generated"],
                       widgets.reconstruct(model, image)["generated"], atol=1e-5)


def test_gradient_step_explorer_reruns_when_k_moves(model):
    explorer = widgets.GradientStepExplorer(analysis.last_layer_problem(model, smooth_images(1)),
                                            max_steps=8, steps=2)
    assert explorer.last["steps"] == 2
    explorer.steps.value = 7
    assert explorer.last["steps"] == 7 and explorer.last["psnr_attention"].shape == (8, 1)
    assert explorer.last["max_abs_difference"].max() < 1e-4


def test_image_regression_explorer_follows_its_controls(model, learned_init):
    dataset = ImageList(smooth_images(5))
    explorer = widgets.ImageRegressionExplorer({"trans-inr": model, "learned init": learned_init}, dataset)
    explorer.index.value = 3
    assert np.allclose(explorer.last["input"], widgets.image_to_numpy(dataset[3]))
    assert explorer.last["upscaled"].shape == (128, 128, 3)
    explorer.model_name.value = "learned init"
    expected = widgets.reconstruct(learned_init, dataset[3])
    assert abs(explorer.last["psnr"] - expected["psnr"]) < 1e-4


def test_image_regression_explorer_takes_an_upload(model):
    import datetime
    import io

    from PIL import Image

    explorer = widgets.ImageRegressionExplorer({"trans-inr": model}, ImageList(smooth_images(2)))
    red = np.zeros((50, 70, 3), np.uint8)
    red[..., 0] = 255
    buffer = io.BytesIO()
    Image.fromarray(red).save(buffer, "PNG")
    content = buffer.getvalue()
    explorer.upload.value = ({"name": "red.png", "type": "image/png", "size": len(content),
                              "content": memoryview(content), "last_modified": datetime.datetime.now()},)
    assert explorer.last["input"].shape == (32, 32, 3)  # centre-cropped and resized
    assert np.allclose(explorer.last["input"], [1.0, 0.0, 0.0])


def test_image_picker_finds_images_by_name_and_keeps_slider_and_list_in_step():
    names = ["red_heart", "grinning_face", "blue_heart", "heart_on_fire", "cat"]
    picker = widgets.ImagePicker(NamedImages(smooth_images(5), names))
    assert [index for _, index in picker.choice.options] == [0, 1, 2, 3, 4]
    assert picker.choice.options[2][0] == "blue heart (#2)"
    picker.index.value = 1
    picker.search.value = "HEART"  # any case; the picked image is no heart, so the first heart is picked
    assert [index for _, index in picker.choice.options] == [0, 2, 3]
    assert picker.index.value == 0 and "3 of 5" in picker.matches.value
    picker.search.value = "heart red"  # every word, in any order
    assert [index for _, index in picker.choice.options] == [0]
    picker.search.value = "heart"
    picker.choice.value = 3  # picking a name moves the slider
    assert picker.index.value == 3
    picker.search.value = "unicorn"  # no match: the list stays usable and the box says so
    assert [index for _, index in picker.choice.options] == [0, 2, 3] and "unicorn" in picker.matches.value
    picker.index.value = 4  # the slider leaves the filtered list: every name is listed again
    assert picker.search.value == "" and picker.choice.value == 4 and len(picker.choice.options) == 5
    unnamed = widgets.ImagePicker(ImageList(smooth_images(3)))
    assert [label for label, _ in unnamed.choice.options] == ["image 0", "image 1", "image 2"]


def test_image_regression_explorer_picks_an_image_by_name(model):
    dataset = NamedImages(smooth_images(4), ["cat", "dog", "cat_face", "owl"])
    explorer = widgets.ImageRegressionExplorer({"trans-inr": model}, dataset)
    explorer.picker.search.value = "owl"
    assert explorer.index.value == 3
    assert np.allclose(explorer.last["input"], widgets.image_to_numpy(dataset[3]))


def test_a_bad_upload_shows_its_error_inside_the_explorer(model):
    import datetime

    dataset = ImageList(smooth_images(2))
    explorer = widgets.ImageRegressionExplorer({"trans-inr": model}, dataset)
    shown = explorer.last
    content = b"these are notes, not pixels"
    explorer.upload.value = ({"name": "notes.txt", "type": "text/plain", "size": len(content),
                              "content": memoryview(content), "last_modified": datetime.datetime.now()},)
    assert "notes.txt" in explorer.message.value and "expected an image file" in explorer.message.value
    assert "Upload failed" in explorer.message.value
    assert explorer.last is shown and explorer.uploaded is None  # the picture stays as it was
    explorer.index.value = 1  # picking a test image clears the message
    assert explorer.message.value == ""


def test_image_from_bytes_names_the_uploaded_file():
    from transinr.data.errors import CorruptImageError

    with pytest.raises(CorruptImageError, match="'holiday.jpg'.*expected an image file"):
        widgets.image_from_bytes(b"\xff\xd8 not really a jpeg", 32, "holiday.jpg")


def test_attention_explorer_map_is_the_chosen_token(model):
    dataset = ImageList(smooth_images(3))
    explorer = widgets.AttentionExplorer(model, dataset)
    explorer.index.value = 2
    explorer.inr_layer.value = 1
    explorer.group.value = 3
    explorer.head.value = 1
    expected = widgets.attention_overlay(model, dataset[2], 1, 3, explorer.transformer_layer.value, 1)
    assert explorer.last["map"].shape == (32, 32)
    assert np.allclose(explorer.last["map"], expected)
    assert 0 < explorer.last["map"].sum() <= 1 + 1e-5


# ----------------------------------------------------------------------------- figures

def test_notebook_figures_have_their_panels(model):
    images = smooth_images(3)
    assert len(figures.samples_figure(model, images).axes) == 3 * 3  # 3 rows × 3 images
    smooth = figures.samples_figure(model, images, scale=4, smooth=True)
    assert len(smooth.axes) == 4 * 3 and smooth.axes[-1].images[0].get_array().shape[:2] == (128, 128)
    assert len(figures.group_attention_figure(model, images[0], inr_layer=0).axes) == 4 + 1  # 4 groups, colour bar
    panels = figures.attention_figure(model, images[:2])
    layers = len(model.weight_tokens.groups)
    assert len(panels.axes) == 2 * (layers + 1) + 1  # input + one panel per INR layer, one shared colour bar
    scales = {panel.images[1].get_clim() for panel in panels.axes[:-1] if len(panel.images) == 2}
    assert len(scales) == 1 and scales.pop()[0] == 0.0  # every panel on the same colour scale
    stats = [{"layer": 0, "cosine_to_base": 0.4, "cosine_across_inputs": -0.159},
             {"layer": 1, "cosine_to_base": -0.015, "cosine_across_inputs": 0.9}]
    assert figures.weight_statistics_figure(stats).axes[0].get_ylim()[0] < -0.159  # negative bars are shown
    histogram = figures.psnr_histogram_figure([20.0, 21.5, 19.0, 25.0])
    assert "mean 21.38 dB" in histogram.axes[0].get_legend().get_texts()[0].get_text()
    trajectory = analysis.gradient_descent_trajectories(analysis.last_layer_problem(model, images[:1]), 3)
    assert len(figures.gradient_step_figure(trajectory).axes) == 2
    at_zero = figures.gradient_step_figure(analysis.gradient_descent_trajectories(
        analysis.last_layer_problem(model, images[:1]), 0))
    assert all(list(ax.get_xticks()) == [0] for ax in at_zero.axes)  # K = 0: one integer tick
    assert figures.spread_indices(10, 3) == [0, 4, 9] and figures.spread_indices(2, 5) == [0, 1]
    matplotlib.pyplot.close("all")

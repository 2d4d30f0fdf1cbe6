import numpy as np
import pytest
import torch

from transinr.analysis import (WeightTokenAttention, gradient_descent_by_attention, gradient_descent_reference,
                               generated_weight_statistics, layerwise_psnr, race_to_psnr, support_view_attention,
                               trace_weight_token, view_attention_shares, weight_token_attention)
from transinr.models import build_model
from transinr.tasks.image import ImageRegression

from .helpers import smooth_images, tiny_image_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_image_config(), 32).eval()


def test_attention_maps_have_expected_shapes_and_rows_sum_to_one(model):
    images = smooth_images(3)
    result = weight_token_attention(model, images)
    n_weight = model.weight_tokens.n_tokens
    assert result.maps.shape == (3, 2, 2, n_weight, 4, 4)  # B, layers, heads, tokens, grid
    totals = result.maps.flatten(-2).sum(-1) + result.to_weight_tokens
    assert torch.allclose(totals, torch.ones_like(totals), atol=1e-5)
    assert result.for_layer(0).shape[3] == model.weight_tokens.groups[0]
    assert result.mean_map(1).shape == (3, 4, 4)
    assert result.token_layer.tolist().count(2) == 3  # last layer: 3 output columns


def test_last_layerwise_decoding_equals_model_output(model):
    images = smooth_images(2)
    scores = layerwise_psnr(model, images)
    assert scores.shape == (model.transformer.blocks.__len__() + 1, 2)
    task = ImageRegression(tiny_image_config())
    assert torch.allclose(scores[-1], task.psnr(model, images), atol=1e-4)


@pytest.mark.parametrize("steps", [1, 5])
def test_hand_built_attention_layer_is_gradient_descent(steps):
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, 50, 6, generator=generator)
    targets = torch.rand(2, 50, 3, generator=generator)
    weight = torch.randn(2, 7, 3, generator=generator) * 0.3
    reference = gradient_descent_reference(features, targets, weight, 0.05, steps, out_bias=0.5)
    by_attention = gradient_descent_by_attention(features, targets, weight, 0.05, steps, out_bias=0.5)
    assert not torch.allclose(reference, weight, atol=1e-3)  # the steps did move the weights
    assert torch.allclose(by_attention, reference, atol=1e-5), (by_attention - reference).abs().max()


def test_generated_weight_statistics_cover_every_layer(model):
    stats = generated_weight_statistics(model, smooth_images(4))
    assert [s["layer"] for s in stats] == [0, 1, 2]
    for s in stats:
        assert -1.0 <= s["cosine_to_base"] <= 1.0 + 1e-6
        assert -1.0 <= s["cosine_across_inputs"] <= 1.0 + 1e-6


def test_widget_callbacks_return_arrays_on_the_image(model):
    from transinr.widgets import attention_overlay, reconstruct

    image = smooth_images(1)[0]
    result = reconstruct(model, image, scale=4)
    assert result["generated"].shape == (32, 32, 3) and result["upscaled"].shape == (128, 128, 3)
    overlay = attention_overlay(model, image, inr_layer=0, group=1, transformer_layer=0, head=1)
    assert overlay.shape == (32, 32)
    full = weight_token_attention(model, image[None])
    token = full.token_layer.tolist().index(0) + 1
    paid = full.maps[0, 0, 1, token].sum().item()
    assert abs(overlay.sum() - paid) < 1e-5


def test_attention_on_pixels_crops_padding():
    from transinr.analysis import attention_on_pixels
    from transinr.models import ImageTokenizer

    tokenizer = ImageTokenizer(178, 9, dim=8, padding=1)
    attention = torch.rand(2, 20, 20)
    pixels = attention_on_pixels(tokenizer, attention)
    assert pixels.shape == (2, 178, 178)
    assert torch.allclose(pixels[:, :8, :8].sum((1, 2)), attention[:, 0, 0] * 64 / 81)


def test_group_ablation_runs_on_a_tiny_budget(tmp_path, image_folder, one_thread):
    from transinr.ablation import ablate_groups

    from .helpers import folder_config, write_config_yaml

    config = folder_config(image_folder, max_images=16)
    path = write_config_yaml(config, tmp_path / "tiny.yaml")
    rows = ablate_groups(str(path), [1, 4, 64], tmp_path / "figs", tmp_path / "runs", progress=False)
    assert [r["groups"] for r in rows] == [1, 4, 16]  # capped at the hyponet width 16
    assert (tmp_path / "figs" / "weight_groups.png").exists()
    assert "| 16 |" in (tmp_path / "figs" / "weight_groups.md").read_text()


def tiny_views_model():
    from transinr.config import Config

    config = Config(task="nvs")
    m = config.model
    m.dim, m.depth, m.n_heads, m.head_dim, m.mlp_dim = 16, 2, 2, 8, 32
    m.patch_size, m.padding, m.n_groups = 4, 0, 4
    m.hyponet.depth, m.hyponet.width, m.hyponet.pe_dim, m.hyponet.pe_sigma = 3, 8, 12, 4.0
    torch.manual_seed(0)
    return build_model(config, 8).eval()


def test_attention_maps_are_laid_out_on_each_support_view():
    model = tiny_views_model()
    rgb, rays = torch.rand(1, 2, 3, 8, 8), torch.rand(1, 2, 8, 8, 3)
    result = weight_token_attention(model, rgb, rays, rays)
    assert result.maps.shape == (1, 2, 2, model.weight_tokens.n_tokens, 2, 2, 2)  # …, views, gh, gw
    totals = result.maps.flatten(-3).sum(-1) + result.to_weight_tokens
    assert torch.allclose(totals, torch.ones_like(totals), atol=1e-5)
    shares = view_attention_shares(result)
    assert shares.shape == (2, 3) and torch.allclose(shares.sum(-1), torch.ones(2), atol=1e-5)
    # Two copies of one view draw equal attention: the tokenizer gives views no identity.
    same = view_attention_shares(weight_token_attention(model, rgb[:, :1].repeat(1, 2, 1, 1, 1),
                                                        rays[:, :1].repeat(1, 2, 1, 1, 1),
                                                        rays[:, :1].repeat(1, 2, 1, 1, 1)))
    assert torch.allclose(same[:, 0], same[:, 1], atol=1e-6)
    with pytest.raises(ValueError, match="posed views"):
        view_attention_shares(WeightTokenAttention(torch.rand(1, 2, 2, 3, 4, 4), torch.rand(1, 2, 2, 3),
                                                   torch.zeros(3), torch.arange(3)))


def test_support_view_attention_is_each_views_share_patch_by_patch():
    import matplotlib

    from transinr.viz import view_attention_figure

    matplotlib.use("Agg")
    model = tiny_views_model()
    rgb, rays_o, rays_d = torch.rand(1, 2, 3, 8, 8), torch.rand(1, 2, 8, 8, 3), torch.rand(1, 2, 8, 8, 3)
    maps = support_view_attention(model, rgb, rays_o, rays_d)
    assert maps.shape == (1, 2, 2, 2)  # B, views, gh, gw
    shares = view_attention_shares(weight_token_attention(model, rgb, rays_o, rays_d))
    assert torch.allclose(maps.sum((2, 3))[0], shares[-1, :2], atol=1e-6)
    first_layer = support_view_attention(model, rgb, rays_o, rays_d, transformer_layer=0)
    assert torch.allclose(first_layer.sum((2, 3))[0], shares[0, :2], atol=1e-6)
    every_layer = support_view_attention(model, rgb, rays_o, rays_d, transformer_layer=None)
    assert every_layer.shape == (1, 2, 2, 2, 2) and torch.equal(every_layer[:, -1], maps)  # B, T, V, gh, gw
    one_view = support_view_attention(model, rgb[:, :1], rays_o[:, :1], rays_d[:, :1])
    assert one_view.shape == (1, 1, 2, 2)
    figure = view_attention_figure(rgb[0], every_layer[0], column_labels=["layer 1", "layer 2"])
    assert len(figure.axes) == 2 * 2 + 1  # views × layers, and one colour bar
    assert figure.axes[1].get_title().startswith("layer 2: ")
    scales = {ax.images[1].get_clim() for ax in figure.axes[:4]}
    assert len(scales) == 1  # one colour scale for every panel, in % of a row
    assert scales.pop() == (0.0, pytest.approx(100 * every_layer.max().item()))
    matplotlib.pyplot.close(figure)


def test_object_to_background_attention_compares_patches_showing_the_object():
    from transinr.analysis import object_to_background_attention

    views = torch.ones(2, 3, 8, 8)  # white, 2 × 2 patches of 4 px
    views[0, :, 1, 1] = 0.2  # the object shows in patch (0, 0) of view 1 ...
    views[1, 0, 6, 5] = 0.5  # ... and in patch (1, 1) of view 2
    maps = torch.full((3, 2, 2, 2), 0.05)  # three layers
    maps[0, 0, 0, 0] = maps[0, 1, 1, 1] = 0.2  # layer 1 looks at the object, 4× a background patch
    ratio = object_to_background_attention(maps, views)
    assert ratio.shape == (3,) and torch.allclose(ratio, torch.tensor([4.0, 1.0, 1.0]))
    # With a 2 px zero border the patches are 6 px: the dark pixel of view 1 lies in patch (0, 0),
    # that of view 2 at padded (8, 7) in patch (1, 1).
    assert torch.allclose(object_to_background_attention(maps, views, padding=2), ratio)
    with pytest.raises(ValueError, match="no background"):
        object_to_background_attention(maps, torch.ones(2, 3, 8, 8))


def test_a_traced_weight_token_ends_as_the_columns_the_model_generates(model):
    import matplotlib

    from transinr.viz import weight_token_trace_figure

    matplotlib.use("Agg")
    images = smooth_images(2)
    generated = model(images)
    for layer, groups in model.weight_tokens.groups.items():
        for group in (0, groups - 1):
            trace = trace_weight_token(model, images, inr_layer=layer, group=group)
            d, out = generated[layer].shape[1] - 1, generated[layer].shape[2]
            width = out // groups
            assert trace["token"].shape == (2, model.transformer.dim) and trace["u"].shape == (2, d)
            assert trace["base"].shape == (d, width) and trace["columns"].shape == (2, d, width)
            assert trace["column_indices"].tolist() == list(range(group * width, (group + 1) * width))
            assert torch.allclose(trace["columns"], generated[layer][:, :d, trace["column_indices"]], atol=1e-6)
            assert torch.allclose(trace["modulated"], trace["base"] * trace["u"].unsqueeze(-1))
            assert torch.allclose(trace["columns"].norm(dim=1), torch.ones(2, width), atol=1e-5)
    figure = weight_token_trace_figure(trace_weight_token(model, images, inr_layer=0, group=1))
    assert len(figure.axes) == 4
    assert len(figure.axes[-1].lines) == 2 * 4 + 1  # 4 columns, their 4 generated twins, the zero line
    matplotlib.pyplot.close(figure)
    with pytest.raises(ValueError, match="4 weight groups"):
        trace_weight_token(model, images, inr_layer=0, group=4)


def test_race_to_psnr_times_the_three_ways_to_an_inr(model):
    import matplotlib

    from transinr.viz import psnr_vs_time_figure

    matplotlib.use("Agg")
    config = tiny_image_config()
    config.model.name = "learned_init"
    config.model.inner_steps = config.model.test_inner_steps = 2
    torch.manual_seed(0)
    learned_init = build_model(config, 32).eval()
    image = smooth_images(1)[0]
    race = race_to_psnr(model, learned_init, image, scratch_steps=40, record_every=10)
    assert list(race["trajectories"]) == ["Trans-INR", "Learned Init", "fitting from scratch"]
    assert race["target"] == pytest.approx(ImageRegression(tiny_image_config()).psnr(model, image[None]).item(),
                                           abs=1e-4)
    assert race["rows"]["Trans-INR"]["steps_to_target"] == 1
    assert race["rows"]["Trans-INR"]["seconds_to_target"] > 0
    assert race["trajectories"]["Learned Init"]["steps"] == [0, 1, 2]
    assert race["trajectories"]["fitting from scratch"]["steps"] == [0, 10, 20, 30, 40]
    for label, row in race["rows"].items():  # each reaches the target at its first record at or above it
        trajectory = race["trajectories"][label]
        reached = [(step, seconds) for step, seconds, (psnr,) in
                   zip(trajectory["steps"], trajectory["seconds"], trajectory["psnr"]) if psnr >= race["target"] - 1e-6]
        step, seconds = reached[0] if reached else (float("inf"), float("inf"))
        assert row["steps_to_target"] == step and row["seconds_to_target"] == pytest.approx(seconds)
    scratch = race["trajectories"]["fitting from scratch"]
    assert scratch["psnr"][-1][0] > scratch["psnr"][0][0] + 1  # Adam fits the image
    assert np.all(np.diff(scratch["seconds"]) > 0)  # wall time only grows
    figure = psnr_vs_time_figure(race["trajectories"], race["target"])
    assert len(figure.axes[0].lines) == 3 + 1  # three methods and the target line
    matplotlib.pyplot.close(figure)

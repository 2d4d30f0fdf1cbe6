import pytest
import torch

from transinr.analysis import (WeightTokenAttention, gradient_descent_by_attention, gradient_descent_reference,
                               generated_weight_statistics, layerwise_psnr, view_attention_shares,
                               weight_token_attention)
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


def test_attention_maps_are_laid_out_on_each_support_view():
    from transinr.config import Config

    config = Config(task="nvs")
    m = config.model
    m.dim, m.depth, m.n_heads, m.head_dim, m.mlp_dim = 16, 2, 2, 8, 32
    m.patch_size, m.padding, m.n_groups = 4, 0, 4
    m.hyponet.depth, m.hyponet.width, m.hyponet.pe_dim, m.hyponet.pe_sigma = 3, 8, 12, 4.0
    model = build_model(config, 8)
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

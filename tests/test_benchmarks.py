"""The benchmark scripts run end to end on tiny configs and print their figures.

No timing is asserted (the test machine is shared); what is checked is that every
field is printed and that the counted FLOPs are the ones the shapes imply.
"""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from transinr.config import ConfigError, load_config
from transinr.models import NeRFHyponet, TransformerEncoder, build_model, hyponets
from transinr.models.hyponets import NarrowLinear, run_mlp
from transinr.models.tokenizers import patchify
from transinr.models.weight_tokens import modulate_columns
from transinr.tasks import build_task

from .helpers import REPO_ROOT, tiny_image_config, write_config_yaml

# The scripts import their shared module as ``common``, as they do when run from benchmarks/.
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import common  # noqa: E402
import inr_build  # noqa: E402
import official_weights  # noqa: E402
import nvs_throughput  # noqa: E402
import train_throughput  # noqa: E402

FAST = ["--steps", "1", "--warmup", "0", "--peak-size", "64", "--device", "cpu"]
TINY_NVS = ["model.dim=32", "model.depth=1", "model.n_heads=2", "model.head_dim=16", "model.mlp_dim=64",
            "model.n_groups=4", "model.patch_size=8", "model.hyponet.depth=3", "model.hyponet.width=16",
            "data.resolution=16", "nvs.n_samples=8", "nvs.train_rays=16", "nvs.render_chunk=100"]


def test_count_gflop_counts_matmul_and_cpu_attention_forward_and_backward(one_thread):
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert common.count_gflop(lambda: a @ b) * 1e9 == 2 * 8 * 16 * 4

    q = torch.randn(1, 2, 5, 8, requires_grad=True)
    forward = common.count_gflop(lambda: F.scaled_dot_product_attention(q, q, q))
    assert forward * 1e9 == 2 * 2 * 5 * 5 * 8 * 2
    # Through torch.autograd.grad (Learned Init's inner loop), which module hooks would break.
    both = common.count_gflop(lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, q, q).sum(), q))
    assert both > forward


def test_peak_memory_sees_an_allocation_inside_the_block(one_thread):
    memory = common.PeakMemory(torch.device("cpu"))
    if not memory.exact:
        pytest.skip("this system cannot reset the process's peak RSS")
    with memory.track():
        block = torch.ones(16 * 2**20)  # 64 MiB, written so that it is resident
        del block
    assert memory.peak_mib >= 48


def test_synthetic_view_batch_is_shaped_like_the_dataset():
    config = load_config("shapes3d_chairs_1view", TINY_NVS)
    batch = nvs_throughput.synthetic_view_batch(config, 3, torch.device("cpu"))
    assert batch["support_rgb"].shape == (3, 1, 3, 16, 16)
    assert batch["support_rays_o"].shape == batch["support_rays_d"].shape == (3, 1, 16, 16, 3)
    assert batch["query_rgb"].shape == batch["query_rays_o"].shape == batch["query_rays_d"].shape == (3, 16, 3)
    # Cameras sit halfway between the depth bounds, so every sample lies where the data's would.
    radius = 0.5 * (config.nvs.near + config.nvs.far)
    assert torch.allclose(batch["query_rays_o"].norm(dim=-1), torch.full((3, 16), radius))


def test_nvs_throughput_prints_training_and_rendering_figures(capsys, one_thread):
    result = nvs_throughput.main(["shapes3d_chairs_1view", *TINY_NVS, "--batch", "2", *FAST])
    out = capsys.readouterr().out
    for field in ("torch threads", "torch 2", "fp32 matmul peak", "training:", "rendering:", "rays/s",
                  "points/s", "ms/step", "ms/view", "GFLOP/step", "GFLOP/view", "% of the fp32 matmul peak",
                  "peak memory"):
        assert field in out, field
    assert result["training"]["rays"] == 2 * 16
    assert result["rendering"]["rays"] == 16 * 16
    # Rendering is the NeRF's matmuls at every point, 2 · Σ fan_in · fan_out FLOPs each,
    # plus rotating each pixel's ray into the world (a 3 × 3 matrix-vector product).
    config = result["config"]
    mlp = 60 * 16 + 16 * 16 + 16 * 4  # pe_dim 60 → 16 → 16 → (rgb, σ)
    expected = 16 * 16 * (config.nvs.n_samples * 2 * mlp + 2 * 3 * 3)
    assert result["rendering"]["gflop"] * 1e9 == pytest.approx(expected)
    assert result["training"]["gflop"] > 0 and result["training"]["seconds"] > 0


def test_nvs_throughput_rejects_an_image_config():
    with pytest.raises(ConfigError, match="needs an nvs config"):
        nvs_throughput.main(["emoji32", *FAST])


def test_inr_build_prints_a_table_with_ratios(tmp_path, capsys, one_thread):
    trans_inr = write_config_yaml(tiny_image_config(), tmp_path / "trans_inr.yaml")
    learned = tiny_image_config()
    learned.model.name, learned.model.test_inner_steps = "learned_init", 2
    learned_init = write_config_yaml(learned, tmp_path / "learned_init.yaml")
    rows = inr_build.main(["--trans-inr", str(trans_inr), "--learned-init", str(learned_init),
                           "--batches", "1,2", "--k-sweep", "1,3", *FAST])
    out = capsys.readouterr().out
    for field in ("torch threads", "fp32 matmul peak", "ms/image", "× Trans-INR", "GFLOP/image", "peak MiB",
                  "Learned Init, K=2 (test)", "fit from scratch"):
        assert field in out, field
    assert len(rows) == 2 * 5  # per batch: Trans-INR, K = 1, 2, 3, fit
    by_name = {(row["method"], row["batch"]): row for row in rows}
    assert by_name[("Trans-INR, 1 forward pass", 2)]["ratio_to_trans_inr"] == 1.0
    one_step = by_name[("Learned Init, K=1", 1)]["gflop_per_image"]
    assert by_name[("Learned Init, K=3", 1)]["gflop_per_image"] == pytest.approx(3 * one_step)
    # A fitting step and an inner step are the same forward and backward pass.
    assert by_name[("fit from scratch, 1 Adam step", 2)]["gflop_per_image"] == pytest.approx(one_step)


def test_train_throughput_uses_the_shared_helpers(tmp_path, capsys, monkeypatch, one_thread):
    config = write_config_yaml(tiny_image_config(), tmp_path / "tiny.yaml")
    monkeypatch.setattr(train_throughput, "matmul_peak_gflops",
                        lambda device: common.matmul_peak_gflops(device, size=64))
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", str(config), "--batch", "2", "--steps", "1",
                                      "--warmup", "0", "--device", "cpu"])
    train_throughput.main()
    out = capsys.readouterr().out
    for field in ("fp32 matmul peak", "images/s", "GFLOP/step", "% of the matmul peak", "peak memory"):
        assert field in out, field


def test_run_all_lists_every_benchmark_and_rejects_unknown_arguments():
    listed = subprocess.run(["bash", "benchmarks/run_all.sh", "--dry-run", "--device", "cpu", "--", "train.amp=off"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    commands = listed.stdout.splitlines()
    scripts = {line.split()[1] for line in commands}
    assert scripts == {"benchmarks/train_throughput.py", "benchmarks/nvs_throughput.py", "benchmarks/inr_build.py"}
    assert all("train.amp=off" in line and "--device cpu" in line for line in commands)
    for script in scripts:
        assert (REPO_ROOT / script).is_file()
    wrong = subprocess.run(["bash", "benchmarks/run_all.sh", "--bogus"], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=300)
    assert wrong.returncode == 2 and "unknown argument" in wrong.stderr


# -- the side-by-side benchmark's weight mapping (benchmarks/official_weights.py) ----------
# The official code is not part of this project, so these tests check the mapping's parts
# against what they stand for, with torch alone: F.unfold for the patch order, ``repeat``
# for the official column groups, and the kit's own model for everything else.



def test_patch_permutation_turns_patchify_into_unfold_order():
    images = torch.randn(2, 3, 8, 8)
    kit = patchify(images, 4)  # (B, L, p·p·C), each patch (row, column, channel)
    unfolded = F.unfold(images, 4, stride=4).transpose(1, 2)  # (B, L, C·p·p): (channel, row, column)
    assert torch.equal(kit[..., official_weights.patch_permutation(4, 3)], unfolded)


def test_group_permutation_turns_interleaved_groups_into_repeated_ones():
    base = torch.randn(6, 8)  # 5 inputs + bias row, 8 columns
    vectors = torch.randn(2, 4, 5)  # 4 groups
    kit = modulate_columns(base, vectors)  # group k owns columns 2k, 2k + 1
    perm = official_weights.group_permutation(8, 4)
    official_base = base[:, perm]
    repeated = vectors.transpose(1, 2).repeat(1, 1, 2)  # column j belongs to group j mod 4
    official = F.normalize(official_base[:-1] * repeated, dim=1)
    assert torch.allclose(kit[:, :-1, perm], official, atol=1e-6)
    assert torch.equal(kit[:, -1, perm], official_base[-1].expand(2, -1))


def kit_and_layout(task: str):
    config = tiny_image_config() if task == "image" else load_config("shapes3d_chairs_1view", TINY_NVS)
    torch.manual_seed(0)
    model = build_model(config, int(config.data.resolution))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    layout = official_weights.Layout.of(model)
    state = model.state_dict()
    for name in layout.kit_only_names(state):
        state[name].zero_()
    return config, model, layout


@pytest.mark.parametrize("task", ["image", "nvs"])
def test_official_mapping_round_trips_every_kit_parameter(task):
    _, model, layout = kit_and_layout(task)
    state = model.state_dict()
    official = official_weights.kit_to_official(state, layout)
    # Every tensor is moved, none is made up: the official model holds as many numbers.
    kit_only = sum(state[n].numel() for n in layout.kit_only_names(state))
    assert sum(v.numel() for v in official.values()) == sum(v.numel() for v in state.values()) - kit_only
    assert all(name.startswith(("tokenizer.prefc", "tokenizer.posemb", "transformer_encoder.layers.",
                                "base_params.", "wtoken_postfc.", "wtokens")) for name in official)
    back = official_weights.official_to_kit(official, layout, state)
    assert back.keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(back[name], value), name


@pytest.mark.parametrize("task", ["image", "nvs"])
def test_reordered_generated_weights_compute_the_same_inr(task, one_thread):
    """Columns reordered by groups and the next layer's rows by the same order: one function."""
    config, model, layout = kit_and_layout(task)
    weights = [torch.randn(2, *shape) for shape in model.hyponet.layer_shapes]
    reordered = official_weights.official_columns(weights, layout)
    assert [w.shape for w in reordered] == [w.shape for w in weights]
    coords = torch.rand(2, 50, model.hyponet.in_dim) * 2 - 1
    assert torch.allclose(model.hyponet(coords, reordered), model.hyponet(coords, weights), atol=1e-5)
    # ... and differ from the kit's order wherever a layer has groups of several columns.
    assert any(not torch.equal(a, b) for a, b in zip(reordered, weights))


def test_official_mapping_refuses_a_nonzero_kit_only_parameter():
    config = tiny_image_config()
    config.model.qkv_bias = True
    model = build_model(config, 32)
    layout = official_weights.Layout.of(model)
    with torch.no_grad():
        model.transformer.blocks[0].attn.qkv.bias.fill_(0.5)
    with pytest.raises(ValueError, match="no counterpart in the official model"):
        official_weights.kit_to_official(model.state_dict(), layout)


def test_alternating_timer_times_each_function_every_round_in_flipped_order(one_thread):
    calls = []
    config = tiny_image_config()
    model = build_model(config, 32)
    step, _ = common.training_step_closures(config, build_task(config), model, torch.rand(2, 3, 32, 32),
                                            torch.device("cpu"))
    fns = {"a": lambda: (calls.append("a"), step()), "b": lambda: calls.append("b")}
    seconds = common.alternating_seconds(fns, rounds=3, steps=2, warmup=1, device=torch.device("cpu"))
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert len(seconds["a"]) == len(seconds["b"]) == 3
    assert all(a > b > 0 for a, b in zip(seconds["a"], seconds["b"]))  # a training step outlasts an append


def test_against_official_refuses_a_folder_without_the_official_code(tmp_path):
    import against_official

    with pytest.raises(SystemExit, match="not a checkout of the official trans-inr code"):
        against_official.main(["--official", str(tmp_path), "--device", "cpu"])


def test_gpu_check_runs_tiny_on_cpu_and_writes_one_results_file(tmp_path, one_thread):
    import gpu_check

    record = gpu_check.main(["--tiny", "--device", "cpu", "--settings", "fp32,bf16", "--out", str(tmp_path)])
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"
    saved = json.loads(files[0].read_text())
    assert saved["all_ok"] and record["all_ok"]
    for name in ("celeba178 fp32", "shapenet_chairs_1view bf16", "emoji32 training fp32"):
        assert saved[name]["status"] == "ok", saved[name]
    assert saved["celeba178 fp32"]["images_per_s"] > 0 and 0 < saved["celeba178 fp32"]["share_of_peak"]
    assert saved["shapenet_chairs_1view fp32"]["rendering"]["rays_per_s"] > 0
    assert saved["emoji32 training fp32"]["loss_falls"]


# -- the faster step computes the same function ------------------------------------------


def test_last_block_of_only_the_kept_tokens_gives_the_same_tokens_and_gradients(one_thread):
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=16, depth=2, n_heads=2, head_dim=8, mlp_dim=32, qkv_bias=True).double()
    x = torch.randn(3, 9, 16, dtype=torch.float64, requires_grad=True)
    full = encoder(x).tokens[:, -4:]
    kept = encoder(x, keep_last=4).tokens
    assert kept.shape == (3, 4, 16)
    assert torch.allclose(kept, full, atol=1e-12)
    target = torch.randn_like(kept)
    parameters = [x, *encoder.parameters()]
    grads_full = torch.autograd.grad((full * target).sum(), parameters)
    grads_kept = torch.autograd.grad((kept * target).sum(), parameters)
    for a, b in zip(grads_full, grads_kept):
        assert torch.allclose(a, b, atol=1e-12)
    with pytest.raises(ValueError, match="cannot be combined"):
        encoder(x, return_hidden=True, keep_last=4)
    with pytest.raises(ValueError, match="keep_last must be in 1"):
        encoder(x, keep_last=10)


@pytest.mark.parametrize("task", ["image", "nvs"])
def test_trans_inr_weights_equal_those_of_the_full_last_block(task, one_thread):
    """The plain pass updates only the weight tokens in the last block; asking for every
    layer's weights runs the full block: the last layer's weights must agree."""
    _, model, _ = kit_and_layout(task)
    model = model.double()
    if task == "image":
        observations = (torch.rand(2, 3, 32, 32, dtype=torch.float64),)
    else:
        batch = nvs_throughput.synthetic_view_batch(load_config("shapes3d_chairs_1view", TINY_NVS), 2,
                                                    torch.device("cpu"))
        observations = tuple(batch[key].double() for key in ("support_rgb", "support_rays_o", "support_rays_d"))
    plain = model(*observations)
    full = model.run(*observations, return_layer_weights=True).layer_weights[-1]
    for a, b in zip(plain, full):
        assert torch.allclose(a, b, atol=1e-12)


def test_narrow_output_layer_has_the_gradients_of_baddbmm_to_second_order():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, 1, 3, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(NarrowLinear.apply(x, weight, bias), torch.baddbmm(bias, x, weight), atol=1e-14)
    assert torch.autograd.gradcheck(NarrowLinear.apply, (x, weight, bias))
    assert torch.autograd.gradgradcheck(NarrowLinear.apply, (x, weight, bias))  # Learned Init's MAML


def test_narrow_output_layer_under_autocast_gives_each_input_its_own_gradient_dtype():
    x = torch.randn(2, 5, 6, requires_grad=True)
    weight, bias = torch.randn(2, 6, 3, requires_grad=True), torch.randn(2, 1, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = torch.bmm(x, torch.eye(6).expand(2, 6, 6))  # bf16, as a layer's output under autocast
        NarrowLinear.apply(hidden, weight, bias).float().sum().backward()
    assert x.grad.dtype == weight.grad.dtype == bias.grad.dtype == torch.float32


@pytest.mark.parametrize("use_viewdirs", [False, True])
def test_hyponet_without_gradient_evaluates_in_blocks_to_the_same_output(monkeypatch, use_viewdirs):
    hyponet = NeRFHyponet(depth=3, width=16, pe_dim=8, use_viewdirs=use_viewdirs, viewdir_pe_dim=6)
    weights = [torch.randn(2, *shape, requires_grad=True) for shape in hyponet.layer_shapes]
    points, viewdirs = torch.randn(2, 7, 5, 3), torch.randn(2, 7, 5, 3)
    extra = {"viewdirs": viewdirs} if use_viewdirs else {}
    whole = hyponet(points, weights, **extra)  # with a gradient to compute: one pass
    widest = 3 * 8 + (6 if use_viewdirs else 0)  # the input features, wider than the 16 hidden units
    monkeypatch.setattr(hyponets, "EVALUATION_BLOCK_VALUES", 2 * widest * 4)  # blocks of 4 of the 35 points
    calls = []
    monkeypatch.setattr(hyponets, "run_mlp", lambda x, w: calls.append(x.shape[1]) or run_mlp(x, w))
    with torch.no_grad():
        blocked = hyponet(points, weights, **extra)
    assert calls == [4] * 8 + [3]
    assert blocked.shape == whole.shape == (2, 7, 5, 4)
    assert torch.allclose(blocked, whole, atol=1e-6)


# -- profile_step.py ------------------------------------------------------------------------


def test_profile_step_splits_a_step_by_phase_and_kind(tmp_path, capsys, one_thread):
    import profile_step

    config = write_config_yaml(tiny_image_config(), tmp_path / "tiny.yaml")
    result = profile_step.main([str(config), "--batch", "2", "--steps", "1", "--warmup", "1", "--rows", "5",
                                "--peak-size", "64"])
    out = capsys.readouterr().out
    for field in ("step without the profiler", "forward", "backward", "optimiser", "matmul", "elementwise",
                  "memory", "top 5 ops", "top 5 matmuls", "GFLOP/s", "% of the fp32 matmul peak"):
        assert field in out, field
    table = result["by_phase_kind"]
    assert table[("forward", "matmul")] > 0 and table[("backward", "matmul")] > 0
    assert table[("optimiser", "optimiser")] > 0  # Adam's fused kernel, in its own span
    assert not any(phase == "optimiser" and kind == "matmul" for phase, kind in table)
    # The matmuls' FLOPs from their recorded shapes add up to the counted FLOPs of the step.
    model = build_model(load_config(str(config)), 32)
    _, forward_backward = common.training_step_closures(load_config(str(config)), build_task(load_config(
        str(config))), model, torch.rand(2, 3, 32, 32), torch.device("cpu"))
    counted = common.count_gflop(forward_backward) * 1e9
    profiled = sum(flop for (_, _, _), (_, _, flop) in result["by_matmul"].items())
    assert profiled == pytest.approx(counted, rel=1e-6)


def test_profile_step_sorts_ops_into_kinds():
    import profile_step

    kinds = {name: profile_step.op_kind(name) for name in (
        "aten::mm", "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::gelu", "aten::copy_",
        "aten::_fused_adam_", "autograd::engine::evaluate_function: MmBackward0")}
    assert list(kinds.values()) == ["matmul", "matmul", "elementwise", "memory", "optimiser", "framework"]


# -- inr_build.py --to-psnr -------------------------------------------------------------------


def test_inr_build_times_each_method_to_each_psnr_target(capsys, one_thread):
    rows = inr_build.main(["--to-psnr", "5,20,99", "--images", "2", "--tune-steps", "3", "--scratch-steps", "3",
                           "--learned-init-steps", "4", "--device", "cpu"])
    out = capsys.readouterr().out
    for field in ("median time per image to reach the target", "20 dB", "fastest to each target",
                  "2 held-out emoji images of 32 px", "Adam steps (lr 0.001) on its weights"):
        assert field in out, field
    by_method = {row["method"]: row for row in rows}
    assert list(by_method) == ["Trans-INR, 1 forward pass", "Trans-INR + Adam on its weights",
                               "Learned Init, its SGD steps", "fit from scratch, Adam"]
    one_pass, tuned = by_method["Trans-INR, 1 forward pass"], by_method["Trans-INR + Adam on its weights"]
    # Fine-tuning starts from the weights of the pass, its time included: wherever the pass
    # reaches a target, the tuned row reaches it at the same time, at step 0.
    for pass_cell, tuned_cell in zip(one_pass["cells"], tuned["cells"]):
        if pass_cell["images_reaching"] == 2:
            assert tuned_cell["seconds_per_image"] == pass_cell["seconds_per_image"] > 0
            assert tuned_cell["steps"] == 0
    for row in rows:
        times = [cell["seconds_per_image"] for cell in row["cells"]]
        assert times == sorted(times)  # a higher target never takes less time
        assert row["cells"][-1]["images_reaching"] == 0 and times[-1] == float("inf")  # 99 dB: never
    assert by_method["Learned Init, its SGD steps"]["procedure"] == "4 SGD steps from θ_0"


def test_inr_build_to_psnr_refuses_a_model_in_the_wrong_role():
    with pytest.raises(ConfigError, match="expected a trained Learned Init model"):
        inr_build.main(["--to-psnr", "20", "--learned-init", "emoji32", "--device", "cpu"])

"""The benchmark scripts run end to end on tiny configs and print their figures.

No timing is asserted (the test machine is shared); what is checked is that every
field is printed and that the counted FLOPs are the ones the shapes imply.
"""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from transinr.config import ConfigError, load_config

from .helpers import REPO_ROOT, tiny_image_config, write_config_yaml

# The scripts import their shared module as ``common``, as they do when run from benchmarks/.
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import common  # noqa: E402
import inr_build  # noqa: E402
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

"""One resolver for trained models: shipped names, .safetensors files, run folders and
checkpoints go everywhere a checkpoint goes; fine-tuning starts from any of them."""

import json
import os

import pytest
import torch

from transinr.checkpoint import CheckpointError
from transinr.config import ConfigError, load_config
from transinr.evaluate import evaluate_checkpoint
from transinr.pretrained import pretrained_path
from transinr.runtime import choose_threads, usable_cpus
from transinr.trained import config_for_fine_tuning, load_trained, resolve_model_path
from transinr.train import train

from .helpers import folder_config

TINY = ["train.max_images=32", "train.batch_size=16", "train.eval_every=null", "train.log_every=1"]


def test_every_way_of_naming_a_model_resolves(tmp_path):
    assert resolve_model_path("emoji32_demo_G1") == ("shipped", pretrained_path("emoji32_demo_G1"))
    path = pretrained_path("emoji32_demo_G1")
    assert resolve_model_path(path) == ("shipped", path)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="without a checkpoint.pt"):
        resolve_model_path(tmp_path / "empty_run")
    with pytest.raises(FileNotFoundError, match="shipped model name .*emoji32"):
        resolve_model_path("no_such_model")


def test_evaluate_scores_a_shipped_model(tmp_path):
    results = evaluate_checkpoint("emoji32_demo_G1", device="cpu", max_items=8, out_dir=tmp_path)
    shipped = load_trained("emoji32_demo_G1")
    # the step stored with the weights: the signals its run saw, one batch per step
    steps = shipped.results["images_seen"] // shipped.config.train.batch_size
    assert results["n"] == 8 and results["step"] == shipped.step == steps > 0
    assert results["psnr_mean"] > 13  # far above the 11.65 dB of the mean image: real weights


def test_fine_tuning_starts_from_the_shipped_weights_and_resumes_from_its_own(tmp_path, one_thread):
    shipped = load_trained("emoji32_demo_G1")
    config = config_for_fine_tuning(load_config("emoji32_demo", TINY), "emoji32_demo_G1", TINY)
    assert config.model == shipped.config.model and config.train.init_from == "emoji32_demo_G1"
    first = train(config, tmp_path / "run", device="cpu", progress=False, evaluate_at_end=False)
    tuned = load_trained(tmp_path / "run")
    assert tuned.kind == "checkpoint" and tuned.step == first["step"] == 2
    # Two small Adam steps from the shipped weights: close to them, not to a random init.
    moved = [(a - b).abs().max().item() for a, b in
             zip(tuned.model.state_dict().values(), shipped.model.state_dict().values())]
    assert 0 < max(moved) < 0.05


def test_fine_tuning_refuses_a_model_of_another_shape(tmp_path):
    config = load_config("emoji32_demo", TINY + ["train.init_from=emoji32_demo_G1"])  # G16, not G1
    with pytest.raises(ConfigError, match="model.n_groups"):
        train(config, tmp_path / "run", device="cpu", progress=False)


def test_thread_count_follows_omp_num_threads_else_the_usable_cpus(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert choose_threads().startswith("threads: 1 (OMP_NUM_THREADS")
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        line = choose_threads()
        assert torch.get_num_threads() == usable_cpus() and f"threads: {usable_cpus()} (" in line
        if hasattr(os, "sched_getaffinity"):
            assert usable_cpus() <= len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


def test_export_and_figures_take_every_kind_of_model_source(tmp_path, image_folder, one_thread):
    from transinr import cli, figures

    run = tmp_path / "run"
    train(folder_config(image_folder, max_images=16), run, device="cpu", progress=False)
    out = tmp_path / "out"
    cli.main(["export", str(run), "--out-dir", str(out)])  # a run folder
    cli.main(["export", "emoji32_demo_G1", "--out-dir", str(out)])  # a shipped name
    exported = load_trained(out / "tiny.safetensors")
    assert exported.kind == "shipped" and exported.step == 2
    assert exported.results["test_psnr_mean"] == json.loads((run / "results.json").read_text())["test_psnr_mean"]
    shipped, copy = load_trained("emoji32_demo_G1"), load_trained(out / "emoji32_demo_G1.safetensors")
    assert copy.step == shipped.step > 0 and copy.stored_config == shipped.stored_config
    assert copy.results == shipped.results and copy.results["test_psnr_mean"] > 13
    assert all(torch.equal(a, b) for a, b in zip(copy.model.state_dict().values(), shipped.model.state_dict().values()))

    # figures MODEL loads through the same resolver; only a shipped config's name is trained live.
    for source, step in ((run, 2), (run / "checkpoint.pt", 2), ("emoji32_demo_G1", shipped.step), (out / "tiny.safetensors", 2)):
        model, config, meta = figures._load_model(str(source), smoke=True, device="cpu", train_live=True)
        assert meta["step"] == str(step) and config.task == "image" and not model.training
    with pytest.raises(FileNotFoundError, match="no model 'emoji23': expected a run folder"):
        figures._load_model("emoji23", smoke=True, device="cpu", train_live=True)

"""Interrupted training resumes losslessly; checkpoints are written atomically.

"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch

from transinr import checkpoint as checkpoint_module
from transinr.checkpoint import CheckpointError, atomic_save, remove_stale_temporaries, safe_load
from transinr.tasks.image import ImageRegression
from transinr.train import CHECKPOINT_NAME, train

from .helpers import (REPO_ROOT, cli_command, cli_environment, folder_config, last_logged_step,
                      loss_curve, run_cli, write_config_yaml)



# ----------------------------------------------------------------------------- SIGKILL and resume


def test_sigkilled_cli_run_resumes_with_the_same_loss_curve(tmp_path, image_folder, one_thread):
    # Dropout makes every step draw from the global RNG, so the curve after resumption
    # only matches if the RNG states (and the data order) are restored exactly.
    config = folder_config(image_folder, epochs=30.0, checkpoint_every=5)
    config.model.dropout = 0.1
    total_steps = 120  # 36 training images // batch 8 = 4 steps an epoch
    config_path = write_config_yaml(config, tmp_path / "tiny.yaml")
    run_dir = tmp_path / "run"
    command = ["train", str(config_path), "--run-dir", str(run_dir), "--device", "cpu", "--quiet"]

    stderr_path = tmp_path / "killed_run.stderr"
    with stderr_path.open("w") as stderr:  # a file, not a pipe: a full pipe would stall the run
        process = subprocess.Popen(cli_command(*command), cwd=REPO_ROOT, env=cli_environment(),
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        # Step 27 logged: a checkpoint of step >= 25 exists, most likely 25 or 30, which
        # are mid-epoch (4 steps an epoch), where restoring the RNG state matters most.
        while last_logged_step(run_dir) < 27 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, f"training ended before it could be killed: {stderr_path.read_text()}"
        assert last_logged_step(run_dir) >= 27, "training too slow: step 27 not reached in 300 s"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = safe_load(run_dir / CHECKPOINT_NAME)["step"]
    assert 25 <= killed_at < total_steps and killed_at % 5 == 0

    resumed = run_cli(*command)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir} from step {killed_at}/{total_steps}" in resumed.stdout
    assert safe_load(run_dir / CHECKPOINT_NAME)["step"] == total_steps
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == total_steps

    reference_dir = tmp_path / "uninterrupted"
    reference = train(config, reference_dir, device="cpu", progress=False)
    curve, reference_curve = loss_curve(run_dir), loss_curve(reference_dir)
    assert [step for step, _ in curve] == list(range(1, total_steps + 1))  # no step lost or logged twice
    assert [step for step, _ in reference_curve] == list(range(1, total_steps + 1))
    for (step, loss), (_, expected) in zip(curve, reference_curve):
        assert loss == pytest.approx(expected, rel=1e-6, abs=1e-9), f"loss differs at step {step}"
    assert results["test_psnr_mean"] == pytest.approx(reference["test_psnr_mean"], rel=1e-6)


def stop_at_call(n: int):
    """A ``training_loss`` that raises KeyboardInterrupt at its ``n``-th call (a Ctrl-C)."""
    original, calls = ImageRegression.training_loss, []

    def training_loss(task, model, batch, epoch):
        calls.append(epoch)
        if len(calls) == n:
            raise KeyboardInterrupt
        return original(task, model, batch, epoch)
    return training_loss


@pytest.mark.parametrize("checkpoint_every", [3, 4], ids=["mid-epoch", "epoch-boundary"])
def test_resumed_run_is_exact_with_random_steps(tmp_path, image_folder, one_thread, monkeypatch,
                                                checkpoint_every):
    """The same check in-process, at a known place: in the middle of an epoch and at its end."""
    config = folder_config(image_folder, epochs=3.0, checkpoint_every=checkpoint_every)
    config.model.dropout = 0.1
    train(config, tmp_path / "uninterrupted", device="cpu", progress=False, evaluate_at_end=False)

    run_dir = tmp_path / "interrupted"
    monkeypatch.setattr(ImageRegression, "training_loss", stop_at_call(checkpoint_every + 2))
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir, device="cpu", progress=False, evaluate_at_end=False)
    monkeypatch.undo()
    assert safe_load(run_dir / CHECKPOINT_NAME)["step"] == checkpoint_every
    assert loss_curve(run_dir)[-1][0] == checkpoint_every + 1  # one step done after the checkpoint

    train(config, run_dir, device="cpu", progress=False, evaluate_at_end=False)
    assert loss_curve(run_dir) == loss_curve(tmp_path / "uninterrupted")  # exact, on one machine


def test_run_killed_before_its_first_checkpoint_starts_over_cleanly(tmp_path, image_folder, one_thread):
    config = folder_config(image_folder, epochs=1.0, checkpoint_every=100)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # What a kill after two logged steps, before any checkpoint, leaves behind.
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "loss": 9.0}\n')
    train(config, run_dir, device="cpu", progress=False, evaluate_at_end=False)
    steps = [step for step, _ in loss_curve(run_dir)]
    assert steps == [1, 2, 3, 4]
    assert 9.0 not in [loss for _, loss in loss_curve(run_dir)]


def test_resuming_with_another_config_names_the_key(tmp_path, image_folder, one_thread):
    config = folder_config(image_folder, epochs=1.0, checkpoint_every=2)
    run_dir = tmp_path / "run"
    train(config, run_dir, device="cpu", progress=False, evaluate_at_end=False)
    config.train.lr = 5e-4
    config.train.log_every = 2  # allowed to change between a run and its resumption
    with pytest.raises(CheckpointError, match=r"train\.lr: 0\.001 → 0\.0005") as info:
        train(config, run_dir, device="cpu", progress=False)
    assert "log_every" not in str(info.value) and "--run-dir" in str(info.value)


def test_a_run_saved_before_a_config_key_existed_resumes_with_its_default(tmp_path, image_folder, one_thread):
    config = folder_config(image_folder, epochs=1.0, checkpoint_every=2)
    run_dir = tmp_path / "run"
    train(config, run_dir, device="cpu", progress=False, evaluate_at_end=False)
    path = run_dir / CHECKPOINT_NAME
    old = torch.load(path, weights_only=True)
    del old["config"]["model"]["inner_lr_per"]  # as written by a version without that key
    old["step"] = 2
    atomic_save(old, path)
    train(config, run_dir, device="cpu", progress=False, evaluate_at_end=False)  # no CheckpointError
    assert [step for step, _ in loss_curve(run_dir)] == [1, 2, 3, 4]
    assert "inner_lr_per" in torch.load(path, weights_only=True)["config"]["model"]


# ----------------------------------------------------------------------------- atomic writes


def test_failed_save_keeps_the_old_checkpoint_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 10, "weights": torch.ones(3)}, path)
    original_bytes = path.read_bytes()

    def dies_half_way(obj, file, *args, **kwargs):
        file.write(original_bytes[: len(original_bytes) // 2])  # a half-written file...
        raise OSError("No space left on device")  # ...then the disk fills up

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        atomic_save({"step": 20, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()

    assert path.read_bytes() == original_bytes
    assert safe_load(path)["step"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_save_never_exposes_a_partial_file_under_the_checkpoint_name(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 1}, path)
    seen_during_save = []
    real_save = torch.save

    def watching_save(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        seen_during_save.append(safe_load(path)["step"])  # what a reader sees mid-save

    monkeypatch.setattr(checkpoint_module.torch, "save", watching_save)
    atomic_save({"step": 2}, path)
    assert seen_during_save == [1] and safe_load(path)["step"] == 2


def test_half_written_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 1, "weights": torch.ones(100)}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a complete PyTorch checkpoint"):
        safe_load(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        safe_load(path)


def test_temporaries_left_by_a_kill_are_removed_on_the_next_start(tmp_path, image_folder, one_thread):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    leftover = run_dir / f".{CHECKPOINT_NAME}.abc123.tmp"  # as atomic_save names them
    leftover.write_bytes(b"half a checkpoint")
    unrelated = run_dir / "notes.tmp"
    unrelated.write_text("keep me")
    config = folder_config(image_folder, epochs=1.0, checkpoint_every=2)
    train(config, run_dir, device="cpu", progress=False, evaluate_at_end=False)
    assert not leftover.exists() and unrelated.exists()
    assert remove_stale_temporaries(run_dir / CHECKPOINT_NAME) == []

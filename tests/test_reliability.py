"""Untrusted checkpoints cannot run code; mismatched ones are named; runs are reproducible."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from transinr import cli
from transinr.checkpoint import CheckpointError, load_state_strict, safe_load
from transinr.config import config_from_dict, config_to_dict
from transinr.models import build_model
from transinr.train import CHECKPOINT_FORMAT, CHECKPOINT_NAME, load_model_from_checkpoint, train

from .helpers import (REPO_ROOT, cli_command, cli_environment, folder_config, last_logged_step,  # noqa: F401
                      read_metrics, write_config_yaml)

PACKAGE_ROOT = REPO_ROOT / "transinr"


# ----------------------------------------------------------------------------- untrusted pickles


def leave_marker(path: str) -> None:
    """What the malicious pickles call when unpickled: proof that code ran."""
    Path(path).write_text("code from a checkpoint ran")


class CallsAFunction:
    """Unpickles by calling a function of this module."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (leave_marker, (self.marker,))


class RunsExec:
    """Unpickles by running arbitrary source with ``exec``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


PAYLOADS = {"function": CallsAFunction, "exec": RunsExec}


def write_malicious_checkpoint(path: Path, marker: Path, payload: str) -> Path:
    """A file shaped like a transinr checkpoint whose model entry runs code when unpickled."""
    torch.save({"format": CHECKPOINT_FORMAT, "step": 1, "model": PAYLOADS[payload](marker)}, path)
    return path


@pytest.fixture(params=sorted(PAYLOADS))
def malicious(request, tmp_path):
    marker = tmp_path / "marker.txt"
    path = write_malicious_checkpoint(tmp_path / "downloaded.pt", marker, request.param)
    yield path, marker
    # The control: the file really is malicious. Without weights_only it runs its code.
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_safe_load_refuses_a_pickle_that_runs_code(malicious):
    path, marker = malicious
    with pytest.raises(CheckpointError) as info:
        safe_load(path)
    message = str(info.value)
    assert message.startswith(f"refusing to load {path}") and "never executes" in message
    assert "weights_only=False" not in message  # no advice to switch the protection off
    assert not marker.exists()


def test_loading_a_model_refuses_it(malicious):
    path, marker = malicious
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model_from_checkpoint(path)
    assert not marker.exists()


def test_cli_evaluate_refuses_it_with_a_one_line_error(malicious, capsys):
    path, marker = malicious
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(path), "--device", "cpu"])
    assert info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: refusing to load {path}") and "\n" not in error
    assert not marker.exists()


def test_training_refuses_to_resume_from_it(malicious, image_folder):
    path, marker = malicious
    run_dir = path.parent / "run"
    run_dir.mkdir()
    (run_dir / CHECKPOINT_NAME).write_bytes(path.read_bytes())
    config = folder_config(image_folder, epochs=1.0)
    with pytest.raises(CheckpointError, match="refusing to load"):
        train(config, run_dir, device="cpu", progress=False)
    assert not marker.exists()


def test_files_that_are_not_transinr_checkpoints_are_named(tmp_path):
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a checkpoint dict"):
        load_model_from_checkpoint(tmp_path / "list.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a transinr checkpoint"):
        load_model_from_checkpoint(tmp_path / "other.pt")
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt: it is not a complete PyTorch checkpoint"):
        safe_load(tmp_path / "notes.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        safe_load(tmp_path / "missing.pt")


def _calls(tree: ast.AST, module: str, names: set[str]):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names
                and isinstance(node.func.value, ast.Name) and node.func.value.id == module):
            yield node


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def test_every_load_in_the_package_is_weights_only():
    """A new ``torch.load`` without ``weights_only=True`` anywhere in the package fails here."""
    offenders, torch_loads = [], 0
    for source in sorted(PACKAGE_ROOT.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        where = lambda call: f"{source.relative_to(REPO_ROOT)}:{call.lineno}"  # noqa: E731
        for call in _calls(tree, "torch", {"load"}):
            torch_loads += 1
            if _keyword(call, "weights_only") is not True:
                offenders.append(f"{where(call)} torch.load without weights_only=True")
        for call in _calls(tree, "pickle", {"load", "loads"}):
            offenders.append(f"{where(call)} pickle.{call.func.attr}")
        for call in _calls(tree, "np", {"load"}):
            if _keyword(call, "allow_pickle") is not False:
                offenders.append(f"{where(call)} np.load without allow_pickle=False")
    assert torch_loads >= 1  # the scan does see the checkpoint loader
    assert not offenders, "\n".join(offenders)


# ----------------------------------------------------------------------------- another config


@pytest.fixture
def trained_checkpoint(tmp_path, image_folder, one_thread):
    config = folder_config(image_folder, epochs=1.0, checkpoint_every=4)
    train(config, tmp_path / "run", device="cpu", progress=False, evaluate_at_end=False)
    return tmp_path / "run" / CHECKPOINT_NAME, config


def _first_shape_mismatch(own: dict, other: dict) -> str:
    return next(key for key in other if key in own and own[key].shape != other[key].shape)


def test_weights_from_another_config_name_the_parameter(trained_checkpoint):
    path, config = trained_checkpoint
    weights = safe_load(path)["model"]
    config.model.dim = 48
    wider = build_model(config, 16)
    expected = _first_shape_mismatch(wider.state_dict(), weights)
    with pytest.raises(CheckpointError) as info:
        load_state_strict(wider, weights, str(path))
    message = str(info.value)
    assert f"parameter {expected!r}" in message and "another config" in message
    assert str(tuple(weights[expected].shape)) in message and str(tuple(wider.state_dict()[expected].shape)) in message

    config.model.dim, config.model.depth = 32, 3
    deeper = build_model(config, 16)
    missing = [key for key in deeper.state_dict() if key not in weights]
    with pytest.raises(CheckpointError, match="does not fit this model: missing") as info:
        load_state_strict(deeper, weights, str(path))
    assert missing and repr(missing[0]) in str(info.value)


def test_checkpoint_whose_config_does_not_fit_its_weights_names_the_parameter(trained_checkpoint, capsys):
    path, _ = trained_checkpoint
    checkpoint = safe_load(path)
    checkpoint["config"]["model"]["hyponet"]["width"] = 24  # the weights are for width 16
    torch.save(checkpoint, path)
    model = build_model(config_from_dict(checkpoint["config"]), checkpoint["image_size"])
    expected = _first_shape_mismatch(model.state_dict(), checkpoint["model"])
    with pytest.raises(CheckpointError, match=f"parameter {re.escape(repr(expected))} has shape"):
        load_model_from_checkpoint(path)
    with pytest.raises(SystemExit) as info:
        cli.main(["evaluate", str(path), "--device", "cpu"])
    assert info.value.code == 2
    assert re.match(f"error: .*parameter {re.escape(repr(expected))} has shape", capsys.readouterr().err)


# ----------------------------------------------------------------------------- reproducibility


def _without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "train_seconds"} for record in records]


def test_same_seed_and_config_give_the_same_metrics(tmp_path, image_folder, one_thread):
    config = folder_config(image_folder, epochs=2.0, checkpoint_every=4)
    config.model.dropout = 0.1  # the runs draw random numbers at every step
    first = train(config, tmp_path / "first", device="cpu", progress=False)
    second = train(config, tmp_path / "second", device="cpu", progress=False)
    assert _without_timings(read_metrics(tmp_path / "first")) == _without_timings(read_metrics(tmp_path / "second"))
    for key in ("test_psnr_mean", "test_psnr_std", "mean_image_psnr", "steps"):
        assert first[key] == second[key], key
    saved = [json.loads((tmp_path / run / "results.json").read_text()) for run in ("first", "second")]
    assert saved[0]["test_psnr_mean"] == saved[1]["test_psnr_mean"] == first["test_psnr_mean"]

    config.train.seed = 1  # and the seed is what they depend on
    third = train(config, tmp_path / "third", device="cpu", progress=False, evaluate_at_end=False)
    assert third["step"] == first["steps"]
    losses = [[r["loss"] for r in read_metrics(tmp_path / run) if "loss" in r] for run in ("first", "third")]
    assert losses[0] != losses[1]


def test_run_directory_records_config_versions_and_git_revision(tmp_path, image_folder, one_thread):
    config = folder_config(image_folder, epochs=1.0, checkpoint_every=4)
    train(config, tmp_path / "run", device="cpu", progress=False, evaluate_at_end=False)
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded == config_to_dict(config)
    assert config_from_dict(recorded) == config  # the run can be repeated from its folder

    environment = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert {"versions", "git_revision", "platform", "device", "command", "torch_threads"} <= set(environment)
    import transinr
    versions = environment["versions"]
    assert versions["torch"] == torch.__version__ and versions["transinr"] == transinr.__version__
    assert {"python", "numpy"} <= set(versions)
    if (REPO_ROOT / ".git").exists():  # running from a checkout: the commit is recorded
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", environment["git_revision"])
    assert environment["device"] == "cpu"


# ----------------------------------------------------------------------------- one training per run folder


def _wait_for(condition, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the first training ended early:\n{process.stderr.read()}"
        assert time.monotonic() < deadline, "the first training did not start in time"
        time.sleep(0.1)


def test_a_second_training_in_a_busy_run_folder_stops_and_a_killed_ones_lock_is_taken_over(
        tmp_path, image_folder, one_thread, capsys):
    run_dir = tmp_path / "run"
    # A long run that writes no checkpoint before it is killed; logs every step.
    long_run = write_config_yaml(folder_config(image_folder, max_images=400_000, checkpoint_every=1_000_000),
                                 tmp_path / "long.yaml")
    first = subprocess.Popen(cli_command("train", str(long_run), "--run-dir", str(run_dir), "--quiet"),
                             cwd=REPO_ROOT, env=cli_environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: last_logged_step(run_dir) >= 1, first)  # it holds the lock and is training
        # The second one, started while the first trains, with another learning rate (and a
        # short budget, so that this test ends soon should the lock ever let it in).
        with pytest.raises(SystemExit) as stop:
            cli.main(["train", str(long_run), "train.lr=3e-4", "train.max_images=64", "--run-dir", str(run_dir),
                      "--quiet"])
        assert stop.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith(f"error: {run_dir} is in use: process {first.pid}, started ")
        assert "Traceback" not in error and first.poll() is None  # the first trains on, undisturbed
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["lr"] == 1e-3
    finally:
        first.kill()  # SIGKILL: no chance to remove its lock file
        first.wait()
    assert (run_dir / "run.lock").exists()

    # The next training in the folder finds the lock's owner gone, takes the lock over and
    # (there being no checkpoint) starts over.
    short_run = folder_config(image_folder, max_images=16)
    with pytest.warns(UserWarning, match=rf"taking over the lock of process {first.pid}, .* no longer running"):
        results = train(short_run, run_dir, device="cpu", progress=False, evaluate_at_end=False)
    assert results["step"] == 2 and [r["step"] for r in read_metrics(run_dir) if "loss" in r] == [1, 2]
    assert not (run_dir / "run.lock").exists()  # released at the end


def test_a_missing_torch_is_named_in_one_line_not_a_chained_traceback():
    """The error reporter itself imports torch; it must still explain that torch is what is missing."""
    hide_torch = ("import sys; sys.modules['torch'] = None; sys.argv = ['transinr', 'scale', '--out', 'x']; "
                  "from transinr.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", hide_torch], cwd=REPO_ROOT, env=cli_environment(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "error: the Python package 'torch' is not installed" in done.stderr

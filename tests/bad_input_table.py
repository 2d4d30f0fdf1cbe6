"""One row per bad input: what is tried, and the message that must come back.

``tests/test_bad_input_table.py`` runs every row; ``docs/what_happens_when.md`` shows
the same rows between its ``generated`` markers. Regenerate that part after changing
a row with ``python -m tests.bad_input_table``; a test fails while the two differ.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

DOC = Path(__file__).resolve().parent.parent / "docs" / "what_happens_when.md"
BEGIN = "<!-- generated from tests/bad_input_table.py: python -m tests.bad_input_table -->"
END = "<!-- end of generated table -->"
REPORTED = re.compile(r"^(error:|Traceback|transinr[\w -]*: error:)")


@dataclass
class Row:
    id: str
    case: str
    tried: str  # the command or call, as the documentation shows it
    run: Callable[[Path], str]  # does it in a temporary folder; returns what the user sees
    expected: str  # a regular expression the output must match


def cli(*argv: str) -> Callable[[Path], str]:
    """Run ``transinr ARGV`` in-process; the output is ``exit N`` and stderr.

    ``{tmp}`` in an argument stands for the row's temporary folder.
    """
    def run(tmp: Path) -> str:
        from transinr import cli as command_line

        stderr = io.StringIO()
        status = 0
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                command_line.main([item.replace("{tmp}", str(tmp)) for item in argv])
            except SystemExit as stop:
                status = stop.code
        # Only the lines that report the failure (ours, argparse's "transinr CMD: error: …",
        # a traceback): progress and status lines vary.
        lines = [line for line in stderr.getvalue().splitlines() if REPORTED.match(line)]
        return f"exit {status}\n" + "\n".join(lines)
    return run


def failure(call: Callable[[Path], object]) -> Callable[[Path], str]:
    """Output of a library call: the exception (type and message) or the warnings it gave."""
    def run(tmp: Path) -> str:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                call(tmp)
            except Exception as error:  # noqa: BLE001 - the row states which one is expected
                return f"{type(error).__name__}: {error}"
        return "\n".join(f"warning: {w.message}" for w in caught) or "no error"
    return run


def described(error: BaseException) -> Callable[[Path], str]:
    """What the command line's error handler makes of ``error``."""
    def run(tmp: Path) -> str:
        from transinr.failures import describe

        status, message = describe(error)
        return f"exit {status}\nerror: {message}"
    return run


def _torn_metrics(tmp: Path):
    from transinr.train import MetricsLog

    path = tmp / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    MetricsLog(path, resume_step=2)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


# A process that takes a run folder's lock the way a training does, then waits.
LOCK_HOLDER = ("import sys, time; from transinr.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
               "print('locked', flush=True); time.sleep(120)")


@contextlib.contextmanager
def _lock_held_by_another_process(run_dir: Path):
    """Yields the PID of a live process that holds ``run_dir``'s lock; kills it at the end."""
    import subprocess
    import sys

    run_dir.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run_dir)], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def _second_training(tmp: Path) -> str:
    with _lock_held_by_another_process(tmp / "busy") as other:
        output = cli("train", "emoji32_demo", "--run-dir", "{tmp}/busy")(tmp)
    return output.replace(f"process {other.pid},", "process <other pid>,")


def _killed_holder(tmp: Path) -> str:
    from transinr.run_lock import RunLock

    with _lock_held_by_another_process(tmp / "left") as other:
        pass  # killed (SIGKILL) on leaving: its run.lock stays behind

    def train_there(tmp: Path):
        with RunLock(tmp / "left"):  # what the next training in that folder does first
            pass

    return failure(train_there)(tmp).replace(f"process {other.pid},", "process <killed pid>,")


def _thin_strip(tmp: Path):
    from transinr.data.image_io import resize_shorter_side

    resize_shorter_side(np.zeros((1, 400_000, 3), dtype=np.uint8), 32)


def _learnit_object(tmp: Path, camera_angle_x=0.69, matrix=None):
    from transinr.data.learnit import _read_object

    (tmp / "r_000.png").write_bytes(b"")
    matrix = matrix if matrix is not None else np.eye(4).tolist()
    (tmp / "transforms.json").write_text(json.dumps(
        {"camera_angle_x": camera_angle_x, "frames": [{"file_path": "./r_000", "transform_matrix": matrix}]}))
    _read_object(tmp)


def _nan_pose(tmp: Path):
    matrix = np.eye(4)
    matrix[0, 3] = float("nan")
    _learnit_object(tmp, matrix=matrix.tolist())


def _unusable_meshes(tmp: Path) -> Path:
    folder = tmp / "meshes"
    folder.mkdir()
    (folder / "noise.obj").write_bytes(os.urandom(2048))
    return folder


def _disk_full() -> BaseException:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    except RuntimeError as error:
        return error


def _export_over_shipped(tmp: Path) -> str:
    import torch

    from transinr.train import CHECKPOINT_FORMAT
    from transinr.trained import load_trained

    shipped = load_trained("emoji32_demo_G1")
    config = dict(shipped.stored_config, name="emoji32")  # names itself after another shipped model
    torch.save({"format": CHECKPOINT_FORMAT, "step": 1, "config": config, "image_size": shipped.image_size,
                "model": shipped.model.state_dict()}, tmp / "checkpoint.pt")
    return cli("export", "{tmp}/checkpoint.pt")(tmp)


def _checkpoint_without_config(tmp: Path) -> str:
    import torch

    from transinr.train import CHECKPOINT_FORMAT

    torch.save({"format": CHECKPOINT_FORMAT, "step": 1, "model": {}}, tmp / "crafted.pt")
    return cli("evaluate", "{tmp}/crafted.pt", "--out-dir", "{tmp}/run")(tmp)


def _figures_without_a_package(tmp: Path) -> str:
    from transinr import figures

    needed = figures.FIGURE_DEPENDENCIES
    figures.FIGURE_DEPENDENCIES = {"no_such_package_xyz": "drawing the view-synthesis figures"}
    try:
        return cli("figures", "--all", "--out", "{tmp}/run")(tmp)
    finally:
        figures.FIGURE_DEPENDENCIES = needed


def _hostile_export_name(tmp: Path) -> str:
    from transinr.pretrained import export_stem

    return f"file stem: {export_stem('../../etc/x')}, {export_stem('/abs/path')}"


def _declared(image_size, weights):
    def call(tmp: Path):
        from transinr.checkpoint import build_model_for
        from transinr.config import load_config

        build_model_for(load_config("emoji32_demo"), image_size, weights(), "crafted.safetensors")
    return call


def _truncated_safetensors(tmp: Path):
    from transinr.pretrained import load_pretrained

    (tmp / "cut.safetensors").write_bytes(b"\x10\x00\x00")
    load_pretrained(tmp / "cut.safetensors")


def _int_weights():
    import torch

    return {"weight_tokens.tokens": torch.zeros(3, dtype=torch.int64)}


def _render_unusable(tmp: Path) -> str:
    _unusable_meshes(tmp)
    return cli("render-meshes", "{tmp}/meshes", "{tmp}/out", "--category", "chair", "--n-views", "1")(tmp)


SECTIONS: dict[str, list[Row]] = {
    "Config values (checked when the config is read, before a run folder exists)": [
        Row("batch-size-0", "a batch of no images", "transinr train emoji32_demo train.batch_size=0",
            cli("train", "emoji32_demo", "train.batch_size=0", "--run-dir", "{tmp}/run"),
            r"exit 2\nerror: .*emoji32_demo.yaml: train.batch_size=0 is not allowed: expected an integer ≥ 1"),
        Row("lr-nan", "a learning rate that is not a number", "transinr train emoji32_demo train.lr=nan",
            cli("train", "emoji32_demo", "train.lr=nan", "--run-dir", "{tmp}/run"),
            r"exit 2\nerror: .*train.lr=nan is not allowed: expected a finite number > 0"),
        Row("checkpoint-every-0", "checkpoints every 0 steps", "transinr train emoji32_demo train.checkpoint_every=0",
            cli("train", "emoji32_demo", "train.checkpoint_every=0"),
            r"exit 2\nerror: .*train.checkpoint_every=0 is not allowed: expected an integer ≥ 1"),
        Row("log-every-0", "logging every 0 steps", "transinr train emoji32_demo train.log_every=0",
            cli("train", "emoji32_demo", "train.log_every=0"),
            r"exit 2\nerror: .*train.log_every=0 is not allowed"),
        Row("max-images-0", "a budget of no training images", "transinr train emoji32_demo train.max_images=0",
            cli("train", "emoji32_demo", "train.max_images=0"),
            r"exit 2\nerror: .*train.max_images=0 is not allowed: expected an integer ≥ 1"),
        Row("max-images-negative", "a negative budget", "transinr train emoji32_demo train.max_images=-5",
            cli("train", "emoji32_demo", "train.max_images=-5"),
            r"exit 2\nerror: .*train.max_images=-5 is not allowed"),
        Row("amp-fp16", "fp16 mixed precision (needs loss scaling; not supported)",
            "transinr train emoji32_demo train.amp=fp16", cli("train", "emoji32_demo", "train.amp=fp16"),
            r"exit 2\nerror: .*train.amp='fp16' is not allowed: expected one of 'off', 'bf16'"),
        Row("patch-size", "a patch size that does not tile the image", "transinr train emoji32_demo model.patch_size=5",
            cli("train", "emoji32_demo", "model.patch_size=5"),
            r"exit 2\nerror: .*model.patch_size=5 is not allowed: expected a divisor of data.resolution"),
        Row("groups", "weight groups that do not divide the INR's width", "transinr train emoji32_demo model.n_groups=7",
            cli("train", "emoji32_demo", "model.n_groups=7"),
            r"exit 2\nerror: .*model.n_groups=7 is not allowed: expected a number that splits"),
        Row("dataset-name", "an unknown dataset", "transinr train emoji32_demo data.name=bogus",
            cli("train", "emoji32_demo", "data.name=bogus"),
            r"exit 2\nerror: .*data.name='bogus' is not allowed: expected a dataset of task 'image'"),
        Row("device", "a device this machine does not have", "transinr train emoji32_demo train.device=cuda:99",
            cli("train", "emoji32_demo", "train.device=cuda:99", "--run-dir", "{tmp}/run"),
            r"exit 2\nerror: device 'cuda:99' \(train.device or --device\)"),
        Row("yaml-override", "an override that is not YAML", "transinr train emoji32_demo 'train.lr=['",
            cli("train", "emoji32_demo", "train.lr=["),
            r"exit 2\nerror: override 'train.lr=\[': the value is not valid YAML"),
        Row("override-after-options", "an override after --quiet / --run-dir (accepted, then checked)",
            "transinr train emoji32_demo --quiet --run-dir R train.batch_size=0",
            cli("train", "emoji32_demo", "--quiet", "--run-dir", "{tmp}/run", "train.batch_size=0"),
            r"exit 2\nerror: .*train.batch_size=0 is not allowed"),
    ],
    "Every command, one error line": [
        Row("debug", "--debug (or TRANSINR_DEBUG=1)", "transinr --debug train emoji32_demo train.batch_size=0",
            cli("--debug", "train", "emoji32_demo", "train.batch_size=0"),
            r"exit 2\nTraceback \(most recent call last\):\nerror: .*train.batch_size=0"),
        Row("export-missing", "export of a checkpoint that is not there", "transinr export nowhere.pt --out-dir OUT",
            cli("export", "{tmp}/nowhere.pt", "--out-dir", "{tmp}/out"),
            r"exit 2\nerror: no model '.*nowhere.pt': expected a run folder, a checkpoint file, a .safetensors "
            r"file or a shipped model name \(emoji32"),
        Row("evaluate-split", "evaluate on a split the dataset does not have", "transinr evaluate emoji32 --split bogus",
            cli("evaluate", "emoji32", "--split", "bogus", "--out-dir", "{tmp}/run"),
            r"exit 2\nerror: evaluate --split bogus: emoji split must be one of \('train', 'test', 'all'\); got 'bogus'"),
        Row("evaluate-max-items", "evaluate on no signals", "transinr evaluate emoji32 --max-items 0",
            cli("evaluate", "emoji32", "--max-items", "0", "--out-dir", "{tmp}/run"),
            r"exit 2\ntransinr evaluate: error: argument --max-items: expected an integer ≥ 1, got '0'"),
        Row("evaluate-unknown-model", "evaluate a model that does not exist", "transinr evaluate emoji23",
            cli("evaluate", "emoji23", "--out-dir", "{tmp}/run"),
            r"exit 2\nerror: no model 'emoji23': expected a run folder, .* or a shipped model name \(emoji32"),
        Row("figures-unknown-model", "figures of a model that does not exist", "transinr figures emoji23",
            cli("figures", "emoji23", "--out", "{tmp}/run"),
            r"exit 2\nerror: no model 'emoji23': expected a run folder, .* or a shipped model name \(emoji32"),
        Row("figures-no-model", "figures without a model or --all", "transinr figures",
            cli("figures", "--out", "{tmp}/run"),
            r"exit 2\ntransinr figures: error: give a model \(MODEL or --model\) or --all"),
        Row("figures-3d-model", "2D figures of a view-synthesis model", "transinr figures shapes3d_chairs_1view",
            cli("figures", "shapes3d_chairs_1view", "--out", "{tmp}/run"),
            r"exit 2\nerror: shapes3d_chairs_1view is a model of task 'nvs'; these figures need one of task 'image'"),
        Row("figures-device", "figures on a device this machine does not have",
            "transinr figures emoji32 --device cuda:99", cli("figures", "emoji32", "--device", "cuda:99", "--out", "{tmp}/run"),
            r"exit 2\nerror: device 'cuda:99' \(train.device or --device\)"),
        Row("figures-package", "figures --all without a package the 3D figures need (before any work)",
            "transinr figures --all (trimesh not installed)", _figures_without_a_package,
            r"exit 2\nerror: drawing the view-synthesis figures needs the package 'no_such_package_xyz', which is "
            r"not installed; install it with: pip install"),
        Row("compare-bad-value", "compare with a bad value", "transinr compare emoji32_demo train.batch_size=0",
            cli("compare", "emoji32_demo", "train.batch_size=0", "--out", "{tmp}/out"),
            r"exit 2\nerror: .*train.batch_size=0 is not allowed"),
        Row("ablate-bad-value", "ablate-groups with a bad value", "transinr ablate-groups emoji32_demo train.lr=nan",
            cli("ablate-groups", "emoji32_demo", "train.lr=nan", "--out", "{tmp}/out", "--runs-dir", "{tmp}/runs"),
            r"exit 2\nerror: .*train.lr=nan is not allowed"),
        Row("meshes-missing", "render-meshes on a folder that does not exist",
            "transinr render-meshes nowhere OUT --category chair",
            cli("render-meshes", "{tmp}/nowhere", "{tmp}/out", "--category", "chair"),
            r"exit 2\nerror: Mesh folder .*nowhere does not exist"),
        Row("meshes-unusable", "render-meshes where no file is a usable mesh (random bytes in an .obj)",
            "transinr render-meshes MESHES OUT --category chair", _render_unusable,
            r"exit 2\nerror: none of the 1 mesh files in .*meshes could be used"),
        Row("disk-full", "a full disk while a checkpoint is written", "(torch.save fails with ENOSPC)",
            described(_disk_full()), r"exit 1\nerror: no space left on device: free some space and run the same"),
        Row("sigterm", "SIGTERM (a scheduler's time limit, kill)", "kill -TERM PID",
            described(__import__("transinr.failures", fromlist=["Terminated"]).Terminated()),
            r"exit 143\nerror: terminated \(SIGTERM\); run the same command again to resume"),
        Row("unexpected", "an unexpected error (a bug)", "(any other exception)", described(KeyError("x")),
            r"exit 1\nerror: unexpected KeyError: 'x' .* rerun with --debug \(or TRANSINR_DEBUG=1\)"),
    ],
    "Run folders and inputs": [
        Row("torn-metrics", "a torn last line in metrics.jsonl (kill or full disk mid-write)",
            "MetricsLog(path, resume_step) when train resumes", failure(_torn_metrics),
            r"warning: .*metrics.jsonl: dropped 1 line\(s\) that are not complete JSON records \(line 3"),
        Row("second-writer", "a second training in a run folder another live process trains in",
            "transinr train emoji32_demo --run-dir R (while another process trains in R)", _second_training,
            r"exit 2\nerror: .*busy is in use: process <other pid>, started .* is training in it "
            r"\(lock file .*run.lock\)\. Wait for it to finish, stop it, or use another --run-dir"),
        Row("stale-lock", "a lock left by a training that was killed (SIGKILL)", "transinr train … --run-dir R",
            _killed_holder, r"warning: .*left/run.lock: taking over the lock of process <killed pid>, "
                            r"started .*, which is no longer running"),
        Row("export-shipped", "export over a shipped model (the checkpoint names itself emoji32)",
            "transinr export checkpoint.pt", _export_over_shipped,
            r"exit 2\nerror: .*emoji32.safetensors exists \(a shipped model\); pass --force"),
        Row("export-shipped-onto-itself", "export of a shipped model without --out-dir (onto itself)",
            "transinr export emoji32", cli("export", "emoji32"),
            r"exit 2\nerror: .*pretrained/emoji32.safetensors exists \(a shipped model\); pass --force"),
        Row("export-empty-run-folder", "export of a run folder that has no checkpoint yet",
            "transinr export R --out-dir OUT", cli("export", "{tmp}", "--out-dir", "{tmp}/run"),
            r"exit 2\nerror: .* is a folder without a checkpoint.pt \(not a run folder, or its run has not "
            r"written a checkpoint yet\)"),
        Row("checkpoint-entries", "a checkpoint without the entries a model needs (crafted, or damaged)",
            "transinr evaluate crafted.pt", _checkpoint_without_config,
            r"exit 2\nerror: .*crafted.pt: the checkpoint has no 'config' entry"),
        Row("export-name", "a checkpoint whose config.name is a path", "export_stem(config.name)",
            _hostile_export_name, r"file stem: etc_x, abs_path"),
        Row("huge-image-size", "a model file declaring image_size 40,000", "build_model_for(config, 40000, …)",
            failure(_declared(40_000, dict)),
            r"CheckpointError: crafted.safetensors declares image_size 40000; expected an integer from 1 to 4096"),
        Row("int-weights", "integer (or bool) weights in a model file", "load_pretrained(FILE)",
            failure(_declared(32, _int_weights)),
            r"CheckpointError: crafted.safetensors: weight 'weight_tokens.tokens' is torch.int64"),
        Row("truncated-safetensors", "a truncated .safetensors file", "load_pretrained('cut.safetensors')",
            failure(_truncated_safetensors), r"CheckpointError: cannot read .*cut.safetensors: not a complete"),
        Row("thin-strip", "a 1 × 400,000 px image for a 32 px crop", "resize_shorter_side(strip, 32)",
            failure(_thin_strip), r"ImageTooLargeError: .*resized to 12800000x32 = 409,600,000 pixels exceeds the limit of 50,000,000"),
        Row("nan-angle", "NaN camera_angle_x in a learnit transforms.json", "LearnitShapeNet(...) reading the object",
            failure(lambda tmp: _learnit_object(tmp, camera_angle_x=float("nan"))),
            r"ValueError: camera_angle_x is nan, expected a finite angle"),
        Row("nan-pose", "NaN in a learnit transform_matrix", "LearnitShapeNet(...) reading the object",
            failure(_nan_pose), r"ValueError: frame './r_000': transform_matrix holds NaN or inf"),
    ],
}


def rows() -> list[Row]:
    return [row for section in SECTIONS.values() for row in section]


def render() -> str:
    """The generated part of docs/what_happens_when.md, markers included."""
    parts = [BEGIN, ""]
    for title, section in SECTIONS.items():
        parts += [f"## {title}", "", "| case | tried | what comes back (pattern) | row |", "|---|---|---|---|"]
        for row in section:
            pattern = row.expected.replace("|", "\\|").replace("\n", " ").replace("\\n", " ⏎ ")
            parts.append(f"| {row.case} | `{row.tried}` | `{pattern}` | `{row.id}` |")
        parts.append("")
    parts.append(END)
    return "\n".join(parts) + "\n"


def generated_part(text: str) -> str:
    match = re.search(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n", text, re.S)
    return match.group(0) if match else ""


def write_doc() -> None:
    text = DOC.read_text()
    current = generated_part(text)
    text = text.replace(current, render()) if current else text.rstrip("\n") + "\n\n" + render()
    DOC.write_text(text)


if __name__ == "__main__":
    write_doc()
    print(f"wrote {DOC}")

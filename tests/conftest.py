"""Fixtures shared by the tests."""

from pathlib import Path

import pytest
import torch

from .helpers import write_image_folder


@pytest.fixture(autouse=True)
def full_size_training(monkeypatch):
    """Tests train the step counts they ask for: smoke mode (TRANSINR_SMOKE=1, on for the
    notebooks in a test run) would cut the ``train`` command short, here and in the CLI
    runs the tests start. A test of smoke mode sets it again."""
    monkeypatch.setenv("TRANSINR_SMOKE", "0")


@pytest.fixture
def one_thread():
    """One torch thread: several processes share the 2 test cores without thrashing."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "images")

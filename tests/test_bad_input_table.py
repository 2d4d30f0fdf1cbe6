"""Every row of tests/bad_input_table.py gives its expected message; the doc shows the same rows."""

from __future__ import annotations

import re

import pytest

from .bad_input_table import DOC, generated_part, render, rows


@pytest.mark.parametrize("row", rows(), ids=lambda row: row.id)
def test_bad_input_gives_its_message(row, tmp_path, one_thread):
    output = row.run(tmp_path)
    assert re.search(row.expected, output), f"{row.tried}\n--- got ---\n{output}"
    assert not (tmp_path / "run").exists(), "a refused run must leave no run folder"


def test_row_ids_are_unique():
    ids = [row.id for row in rows()]
    assert len(ids) == len(set(ids))


def test_documentation_matches_the_table():
    assert generated_part(DOC.read_text()) == render(), (
        "docs/what_happens_when.md is out of date: run python -m tests.bad_input_table")

"""The notebooks run top to bottom against results a real run just produced
(nbclient, a fresh kernel each); any failing cell fails the test. Their outputs
are stripped in git (checked here too)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def execute(name: str, results: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = os.environ.get("IOBENCH_RESULTS")
    os.environ["IOBENCH_RESULTS"] = results  # the kernel inherits it, as a user's would
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        if old is None:
            os.environ.pop("IOBENCH_RESULTS")
        else:
            os.environ["IOBENCH_RESULTS"] = old
    return nb


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_outputs_are_stripped_in_git() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), f"{path.name}: no parameters cell"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs committed"


def test_overview_draws_every_figure_of_a_fresh_run(tcg_run) -> None:
    report, *_ = tcg_run
    nb = execute("overview.ipynb", str(report.directory))
    assert images(nb) >= 5  # four bar figures and the timeline
    assert report.meta["run_id"] in str(nb.cells[2].outputs)


def test_exits_deep_dive_on_a_fresh_run(tcg_run) -> None:
    report, *_ = tcg_run
    nb = execute("exits-deep-dive.ipynb", str(report.directory))
    assert images(nb) >= 4  # idle vs traffic, timeline, slice spread, kinds over time


def test_compare_two_fresh_runs(tcg_run, guest_image, tmp_path) -> None:
    from iobench.runner import run
    from iobench.scenario import Scenario

    report, *_ = tcg_run
    second = run(Scenario(backends=("e1000",), accel="tcg", duration_s=2, omit_s=1, repeats=1), tmp_path,
                 log=lambda m: None)
    nb = execute("compare.ipynb", os.pathsep.join((str(report.directory), str(second.directory))))
    text = str([c.outputs for c in nb.cells if c.cell_type == "code"])
    assert "Not comparable" not in text and "e1000" in text
    assert images(nb) >= 3  # ratios, then the exits figure of each run

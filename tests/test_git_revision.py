"""`manifest.git_revision`: '+dirty' for uncommitted changes anywhere in the checkout's tracked
code (not only the package directory), never for outputs under `results/`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from worldvla_bench.manifest import git_revision


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A committed checkout shaped like ours: a package, policies/, and results/."""
    for name in ("pkg/core.py", "policies/mine.py", "results/run/report.md", "Makefile"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return tmp_path


def test_clean_checkout_is_its_commit(checkout: Path) -> None:
    assert git_revision(checkout / "pkg") == _git(checkout, "rev-parse", "HEAD")


@pytest.mark.parametrize("changed", ["pkg/core.py", "policies/mine.py", "Makefile"])
def test_a_change_outside_the_package_is_dirty(checkout: Path, changed: str) -> None:
    (checkout / changed).write_text("v2\n")
    assert git_revision(checkout / "pkg") == _git(checkout, "rev-parse", "HEAD") + "+dirty"


def test_results_and_untracked_files_are_not_code(checkout: Path) -> None:
    (checkout / "results/run/report.md").write_text("rewritten\n")
    (checkout / "policies/untracked.py").write_text("new\n")
    assert git_revision(checkout / "pkg") == _git(checkout, "rev-parse", "HEAD")


def test_outside_a_checkout_is_none(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None

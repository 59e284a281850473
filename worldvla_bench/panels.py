"""Policy panels: named lists of policies (with arguments) evaluated side by side, as data.

A panel is a yaml file, `tasks/panels/<name>.yaml` (installed beside the suite files), or any
path:

```yaml
description: what the panel spreads out
policies:
  expert: {policy: expert}
  expert_noise_0.3: {policy: expert, args: {action_noise: 0.3}}
  mine: {policy: mypackage.module:MyPolicy, args: {checkpoint: path/to.pt}}
```

Each entry names a registered policy or a 'package.module:Class' and its constructor arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from worldvla_bench.errors import BenchError
from worldvla_bench.tasks import tasks_dir

PANELS_SUBDIR = "panels"


@dataclass(frozen=True)
class PanelEntry:
    """One policy of a panel: its label, the policy name or 'module:Class', its arguments."""

    name: str
    policy: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Panel:
    name: str
    entries: tuple[PanelEntry, ...]
    description: str = ""

    def select(self, labels: list[str]) -> Panel:
        """The panel restricted to `labels` (in the panel's order); unknown labels are refused."""
        known = [e.name for e in self.entries]
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise BenchError(f"panel {self.name!r} has no policies {unknown}; valid: "
                             f"{', '.join(known)}")
        chosen = tuple(e for e in self.entries if e.name in set(labels))
        if len(chosen) < 2:
            raise BenchError("a ranking needs at least two policies of the panel")
        return Panel(self.name, chosen, self.description)


def available_panels() -> list[str]:
    folder = tasks_dir() / PANELS_SUBDIR
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_panel(name_or_path: str | Path) -> Panel:
    """A panel by name (`tasks/panels/<name>.yaml`) or from a yaml file path."""
    path = Path(name_or_path)
    if not path.is_file():
        path = tasks_dir() / PANELS_SUBDIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise BenchError(f"no panel {str(name_or_path)!r}: give a yaml path or one of "
                         f"{available_panels()}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    policies = data.get("policies")
    if not isinstance(policies, dict) or len(policies) < 2:
        raise BenchError(f"{path}: a panel needs a 'policies' mapping of at least two entries")
    entries = []
    for label, spec in policies.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("policy"), str):
            raise BenchError(f"{path}: entry {label!r} needs 'policy: <name or module:Class>'")
        unknown = sorted(set(spec) - {"policy", "args"})
        if unknown:
            raise BenchError(f"{path}: entry {label!r} has unknown keys {unknown} "
                             "(use 'policy' and 'args')")
        args = spec.get("args") or {}
        if not isinstance(args, dict):
            raise BenchError(f"{path}: entry {label!r}: 'args' must be a mapping")
        entries.append(PanelEntry(str(label), spec["policy"], dict(args)))
    return Panel(path.stem, tuple(entries), str(data.get("description", "")))

"""Goal -> skill sequence: read the BDDL goal (as given by the privileged channel) and order the
sub-goals into skills, adding the implicit preconditions (open a closed drawer before putting
something in it).

A plan is a list of `Step(skill, args)`; skills are executed by `skills` (this package):

- `open(joint)` / `close(joint)`: pull / push an articulated part (drawer, door) by its handle
- `turn(joint, on)`: turn a knob (stove) on (True) or off (False)
- `pick_place(obj, target, relation)`: grasp `obj`, carry it, release it `relation` ('on' | 'in')
  `target` (an object, a fixture or a region site)

Ordering: switches and openings first (they also make containers reachable), then pick-and-place
in goal order, closings last (close the drawer after the bowl is in it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PLACE_PREDICATES = ("on", "in")
ARTICULATION_PREDICATES = ("open", "close", "turnon", "turnoff")


@dataclass(frozen=True)
class Step:
    skill: str
    args: tuple = field(default_factory=tuple)

    def __str__(self) -> str:
        return f"{self.skill}({', '.join(map(str, self.args))})"


class PlanningError(ValueError):
    """A goal the expert does not know how to achieve."""


def joints_of(state: dict[str, Any], name: str) -> list[str]:
    """The articulation joints behind a goal argument: a region site's joints (a drawer's
    region), or a fixture's joints (a microwave, a stove)."""
    site = state["sites"].get(name)
    if site is not None and site["joints"]:
        return list(site["joints"])
    fixture = state["fixtures"].get(name)
    if fixture is None and site is not None and site["parent"] in state["fixtures"]:
        fixture = state["fixtures"][site["parent"]]
        if len(fixture["joints"]) != 1:  # a region of a multi-joint fixture without joints
            return []
    if fixture is not None:
        return list(fixture["joints"])
    return []


def fixture_of_joint(state: dict[str, Any], joint: str) -> str:
    for name, fixture in state["fixtures"].items():
        if joint in fixture["joints"]:
            return name
    raise PlanningError(f"no fixture has joint {joint!r}")


def _range(art: dict, key: str) -> list[float] | None:
    value = art.get(key)
    return list(value) if value else None


def articulation_is(state: dict[str, Any], joint: str, what: str) -> bool:
    """Whether a joint is open/closed/on/off, read off its position and LIBERO's ranges
    (the planner's own reading of the privileged state, used to skip steps already done)."""
    fixture = state["fixtures"][fixture_of_joint(state, joint)]
    qpos = fixture["joints"][joint]["qpos"]
    art = fixture["articulation"]
    opened, closed = _range(art, "default_open_ranges"), _range(art, "default_close_ranges")
    on = _range(art, "default_turnon_ranges")
    if what == "open" and opened and closed:
        if np.mean(opened) > np.mean(closed):
            return qpos > min(opened)
        return qpos < max(opened)
    if what == "close" and opened and closed:
        if np.mean(opened) > np.mean(closed):
            return qpos < max(closed)
        return qpos > min(closed)
    if what == "turnon" and on:
        return qpos >= min(on)
    if what == "turnoff" and on:
        off = _range(art, "default_turnoff_ranges") or [0.0, 0.0]
        return qpos < max(off)
    return False


def plan(state: dict[str, Any]) -> list[Step]:
    """The skill sequence for the goal in `state['goal']` (see the module docstring)."""
    first: list[Step] = []
    middle: list[Step] = []
    last: list[Step] = []
    for predicate in state["goal"]:
        name, args = predicate[0], predicate[1:]
        if name in PLACE_PREDICATES:
            obj, target = args
            if obj not in state["objects"]:
                raise PlanningError(f"cannot move {obj!r}: not a movable object")
            # implicit precondition: a container region behind a door / drawer must be open
            for joint in _container_joints(state, target) if name == "in" else []:
                step = Step("open", (joint,))
                if step not in first:
                    first.append(step)
            middle.append(Step("pick_place", (obj, target, name)))
        elif name in ("open", "close"):
            joints = joints_of(state, args[0])
            if not joints:
                raise PlanningError(f"{args[0]!r} has no articulation to {name}")
            for joint in joints:
                (first if name == "open" else last).append(Step(name, (joint,)))
        elif name in ("turnon", "turnoff"):
            joints = joints_of(state, args[0])
            if not joints:
                raise PlanningError(f"{args[0]!r} has no knob to turn")
            for joint in joints:
                first.append(Step("turn", (joint, name == "turnon")))
        else:
            raise PlanningError(f"unsupported goal predicate {predicate!r}")
    # a drawer/door that the goal closes but that must be open to put something in: keep both
    return first + middle + last


def _container_joints(state: dict[str, Any], target: str) -> list[str]:
    """Joints that must be open for `target` (a region inside a drawer or behind a door)."""
    site = state["sites"].get(target)
    if site is None:
        return []
    if site["joints"]:
        return list(site["joints"])
    parent = state["fixtures"].get(site["parent"])
    if parent is not None and parent["joints"] and "default_open_ranges" in parent["articulation"]:
        return list(parent["joints"])  # e.g. the microwave's heating region behind its door
    return []

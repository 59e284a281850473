"""Closed-loop skills over the privileged state, written as generators of 7-d actions (the
low-level moves are in `control`, the scene geometry in `geometry`).

Each skill is a generator: it reads `ctx.state` (refreshed by the policy before every step) and
yields one action [dx, dy, dz, droll, dpitch, dyaw, gripper] in [-1, 1] per step, for robosuite's
OSC_POSE controller (1.0 = 0.05 m / 0.5 rad per step; rotation deltas in the world frame;
gripper -1 open, +1 close). A skill returns True when it believes it achieved its step.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from worldvla_bench.policies.expert.control import (
    BASE_BEHIND_HOME,
    CLOSE,
    DOWN,
    GRIP_RATE,
    OPEN,
    Action,
    Context,
    SkillGen,
    _axis_angle_mat,
    _rot_z,
    action_towards,
    facing,
    move,
    set_gripper,
    yaw_for_closing_along,
)
from worldvla_bench.policies.expert.geometry import (
    corridor_top,
    footprint,
    grasp_pose,
    hand_yaw,
    is_hollow,
    wrist_safe_yaw,
)
from worldvla_bench.policies.expert.planner import articulation_is, fixture_of_joint

# names the policy and the tests reach through this module
__all__ = ["BASE_BEHIND_HOME", "DOWN", "GRIP_RATE", "Context", "hand_yaw", "is_hollow", "run_step"]

def travel(
    ctx: Context, goal: np.ndarray, exclude=(), below: float = 0.0, tol: float = 0.01
) -> SkillGen:
    """Go to `goal` the safe way: up, across above whatever lies in between, then down.

    `below` is how far the hand's load (a carried object) hangs under the grasp point.
    """
    goal = np.asarray(goal, dtype=np.float64)
    top = corridor_top(ctx, ctx.eef, goal, exclude)
    z = max(goal[2], top + 0.035 + below)
    if ctx.eef[2] < z - 0.01:
        yield from move(
            ctx, np.array([ctx.eef[0], ctx.eef[1], z + 0.01]), tol=0.02, max_steps=40, yaw_tol=3.2
        )
    z = max(z, ctx.eef[2] - 0.01)
    if np.linalg.norm(goal[:2] - ctx.eef[:2]) > tol:
        yield from move(ctx, np.array([goal[0], goal[1], z]), tol=max(tol, 0.015), max_steps=80)
    ok = yield from move(ctx, goal, tol=tol, max_steps=60)
    return ok


# -- skills ---------------------------------------------------------------------------------


def pick(ctx: Context, name: str) -> SkillGen:
    """Approach from above, descend, close, lift. True if the object rose with the hand."""
    target, yaw = grasp_pose(ctx, name)
    ctx.yaw, ctx.orient = wrist_safe_yaw(ctx, yaw, target), None
    approach = target + np.array([0.0, 0.0, 0.08])
    ctx.grip = OPEN
    yield from travel(ctx, approach, exclude=(name,), tol=0.01)
    yield from move(ctx, target, tol=0.006, max_steps=40, max_speed=0.5)
    yield from set_gripper(ctx, CLOSE, 15)
    z0 = float(ctx.entity(name)["pos"][2])
    lift = ctx.eef + np.array([0.0, 0.0, 0.08])
    yield from move(ctx, lift, tol=0.02, max_steps=25, max_speed=0.7)
    return float(ctx.entity(name)["pos"][2]) > z0 + 0.03 and ctx.gripper_width > 0.002


def place_target(ctx: Context, obj_name: str, target: str, relation: str):
    """(xy the object centre goes to, z its bottom is released at) for `obj on/in target`."""
    ctx.entity(obj_name)
    site = ctx.state["sites"].get(target)
    if site is not None:
        size_world = np.abs(site["xmat"] @ site["size"])
        if relation == "in":
            bottom = site["pos"][2] - size_world[2]
            return site["pos"][:2].copy(), bottom + 0.02
        # on a region: its top surface in the site frame (z axis of the site)
        top = site["pos"][2] + size_world[2]
        return _region_slot(ctx, obj_name, target, size_world), top + 0.01
    other = ctx.entity(target)
    center, _, _ = footprint(other)
    if relation == "in":
        return center[:2], other["aabb_min"][2] + 0.02
    return other["pos"][:2].copy(), other["aabb_max"][2] + 0.01


def _region_slot(ctx: Context, obj_name: str, site_name: str, size_world: np.ndarray):
    """Where in a region site `obj_name` goes: the centre, or when the goal puts several
    objects on the same region, side by side slots along the objects' narrower world axis
    (goal order), so the second does not land on the first (both moka pots on the stove)."""
    site = ctx.state["sites"][site_name]
    names = [p[1] for p in ctx.state.get("goal", ()) if p[0] == "on" and p[2] == site_name]
    center = site["pos"][:2].copy()
    if obj_name not in names or len(names) < 2:
        return center
    spans = [ctx.entity(n)["aabb_max"][:2] - ctx.entity(n)["aabb_min"][:2] for n in names]
    axis = int(np.argmin(np.max(spans, axis=0)))
    spacing = float(np.max(spans, axis=0)[axis]) + 0.01
    half = float(size_world[axis]) - 0.01  # the body origin must stay inside the region
    offset = (names.index(obj_name) - (len(names) - 1) / 2.0) * spacing
    center[axis] += float(np.clip(offset, -half, half))
    return center


def place(ctx: Context, obj_name: str, target: str, relation: str) -> SkillGen:
    """Carry the held object over the target, lower it, release, retreat upwards."""
    obj = ctx.entity(obj_name)
    # the held object's offset from the hand (its body origin; the goal tests the body origin)
    offset = ctx.eef - obj["pos"]
    below = ctx.eef[2] - obj["aabb_min"][2]  # hand height above the object's bottom
    xy, release_bottom = place_target(ctx, obj_name, target, relation)
    goal_hand = np.array([xy[0] + offset[0], xy[1] + offset[1], release_bottom + below])
    above = goal_hand + np.array([0.0, 0.0, 0.04])
    yield from travel(ctx, above, exclude=(obj_name,), below=below, tol=0.012)

    def lowered(c: Context) -> np.ndarray:
        # correct for the object swinging in the hand: servo the object, not the hand
        o = c.entity(obj_name)
        off = c.eef - o["pos"]
        return np.array([xy[0] + off[0], xy[1] + off[1], goal_hand[2]])

    yield from move(ctx, lowered, tol=0.008, max_steps=60, max_speed=0.5)
    yield from set_gripper(ctx, OPEN, 10)
    up = ctx.eef + np.array([0.0, 0.0, 0.08])
    yield from move(ctx, up, tol=0.02, max_steps=20)
    return True


def pick_place(ctx: Context, obj: str, target: str, relation: str, attempts: int = 3) -> SkillGen:
    for attempt in range(attempts):
        ok = yield from pick(ctx, obj)
        if not ok:
            ctx.log.append(f"pick {obj} failed (attempt {attempt + 1})")
            yield from set_gripper(ctx, OPEN, 8)
            yield from move(ctx, ctx.eef + np.array([0.0, 0.0, 0.08]), tol=0.02, max_steps=15)
            continue
        yield from place(ctx, obj, target, relation)
        if _landed(ctx, obj, target, relation):
            return True
        ctx.log.append(f"place {obj} -> {target} missed (attempt {attempt + 1})")
    return False


def _landed(ctx: Context, obj_name: str, target: str, relation: str) -> bool:
    """Coarse check that the released object ended near where it was put (for retries)."""
    obj = ctx.entity(obj_name)
    xy, _ = place_target(ctx, obj_name, target, relation)
    return bool(np.linalg.norm(obj["pos"][:2] - xy) < 0.05)


# -- articulated objects ----------------------------------------------------------------------


def _joint(ctx: Context, joint: str) -> dict[str, Any]:
    return ctx.state["fixtures"][fixture_of_joint(ctx.state, joint)]["joints"][joint]


def _opening_dir(ctx: Context, joint: str) -> np.ndarray:
    fixture = ctx.state["fixtures"][fixture_of_joint(ctx.state, joint)]
    art = fixture["articulation"]
    j = fixture["joints"][joint]
    opened, closed = art.get("default_open_ranges"), art.get("default_close_ranges")
    sign = 1.0 if (opened and closed and np.mean(opened) > np.mean(closed)) else -1.0
    return sign * j["axis"]


def open_drawer(ctx: Context, joint: str) -> SkillGen:
    """Pull a drawer open: the hand turns to face the handle, grasps the bar from the front
    (fingers above and below it) and pulls along the drawer's opening direction."""
    if articulation_is(ctx.state, joint, "open"):
        return True
    if _joint(ctx, joint)["type"] != "slide":
        ok = yield from open_door(ctx, joint)
        return ok
    for attempt in range(2):
        j = _joint(ctx, joint)
        out = _opening_dir(ctx, joint)
        handle = j["handle_pos"].copy()
        ctx.orient = facing(-out)
        yield from set_gripper(ctx, OPEN, 4)
        # rotate while in front of the cabinet, then go straight in
        yield from move(ctx, handle + out * 0.14, tol=0.02, max_steps=60, yaw_tol=0.15)
        yield from move(ctx, handle + out * 0.10, tol=0.01, max_steps=40, yaw_tol=0.08)
        yield from move(ctx, handle - out * 0.005, tol=0.008, max_steps=40, max_speed=0.4)
        yield from set_gripper(ctx, CLOSE, 10)
        for _ in range(60):
            if _past_open(ctx, joint):
                break
            yield action_towards(ctx, ctx.eef + out * 0.04, 0.5)
        yield from set_gripper(ctx, OPEN, 6)
        yield from move(ctx, ctx.eef + out * 0.08, tol=0.02, max_steps=20)
        yield from upright(ctx, ctx.eef + np.array([-0.08, 0.0, 0.05]))
        if articulation_is(ctx.state, joint, "open"):
            return True
        ctx.log.append(f"open {joint} failed (attempt {attempt + 1})")
    return False


def upright(ctx: Context, where: np.ndarray) -> SkillGen:
    """Back to the canonical top-down hand, turning at `where` (pulled back towards the robot,
    where the arm has room to turn its wrist)."""
    yield from move(ctx, where, tol=0.02, max_steps=30, yaw_tol=3.2)
    ctx.orient, ctx.yaw = None, 0.0
    ok = yield from move(ctx, where, tol=0.03, max_steps=40, yaw_tol=0.2)
    return ok


def _past_open(ctx: Context, joint: str) -> bool:
    """Open, with a margin past LIBERO's threshold (so it stays open when released)."""
    fixture = ctx.state["fixtures"][fixture_of_joint(ctx.state, joint)]
    art = fixture["articulation"]
    opened = art.get("default_open_ranges")
    q = fixture["joints"][joint]["qpos"]
    if not opened:
        return articulation_is(ctx.state, joint, "open")
    sign = 1.0 if np.mean(opened) > np.mean(art.get("default_close_ranges", [0.0])) else -1.0
    far = max(opened) if sign > 0 else min(opened)
    near = min(opened) if sign > 0 else max(opened)
    return sign * (q - (near + 0.4 * (far - near))) > 0


def open_door(ctx: Context, joint: str) -> SkillGen:
    ctx.log.append(f"opening hinged {joint}: not implemented")
    return False
    yield  # pragma: no cover


def close_articulated(ctx: Context, joint: str) -> SkillGen:
    """Push a drawer / door closed."""
    if articulation_is(ctx.state, joint, "close"):
        return True
    if _joint(ctx, joint)["type"] == "slide":
        ok = yield from close_drawer(ctx, joint)
        return ok
    ok = yield from close_door(ctx, joint)
    return ok


PUSH_TILT = 0.8  # rad the hand tips towards the push when closing a drawer


def pushing(direction: np.ndarray, tilt: float = PUSH_TILT) -> np.ndarray:
    """Grasp frame tipped from top-down by `tilt` towards the horizontal `direction`: the
    fingertips lead and the wrist trails back and up, out of the way of the cabinet above."""
    d = np.array([direction[0], direction[1], 0.0])
    d /= np.linalg.norm(d)
    axis = np.cross(np.array([0.0, 0.0, -1.0]), d)
    return _axis_angle_mat(axis, tilt) @ _rot_z(yaw_for_closing_along(d[:2])) @ DOWN


def close_drawer(ctx: Context, joint: str, attempts: int = 2) -> SkillGen:
    """Push a drawer shut at its handle with closed fingers, the hand tipped towards the
    cabinet (`pushing`): a top-down hand's forearm hits the cabinet above a low drawer."""
    for attempt in range(attempts):
        j = _joint(ctx, joint)
        out = _opening_dir(ctx, joint)
        handle = j["handle_pos"].copy()
        ctx.orient = pushing(-out)
        yield from set_gripper(ctx, CLOSE, 6)
        # tip the hand above and in front of the handle, then go down and push
        yield from travel(ctx, handle + out * 0.08 + np.array([0.0, 0.0, 0.06]), tol=0.015)
        yield from move(ctx, handle + out * 0.03, tol=0.01, max_steps=40, max_speed=0.5)
        for _ in range(60):
            if articulation_is(ctx.state, joint, "close"):
                break
            yield action_towards(ctx, ctx.eef - out * 0.06, 1.0)
        yield from move(
            ctx,
            ctx.eef + out * 0.06 + np.array([0.0, 0.0, 0.04]),
            tol=0.02,
            max_steps=20,
            yaw_tol=3.2,
        )
        ctx.orient, ctx.yaw = None, 0.0
        if articulation_is(ctx.state, joint, "close"):
            return True
        ctx.log.append(f"close {joint} failed (attempt {attempt + 1})")
    return False


def close_door(ctx: Context, joint: str) -> SkillGen:
    ctx.log.append(f"closing hinged {joint}: not implemented")
    return False
    yield  # pragma: no cover


KNOB_MARGIN = 0.3  # turn this far (rad) past LIBERO's on/off threshold


def _knob_goal(ctx: Context, joint: str, on: bool) -> float:
    """The knob angle to turn to: past the near end of the wanted range, inside the joint's."""
    art = ctx.state["fixtures"][fixture_of_joint(ctx.state, joint)]["articulation"]
    lo, hi = (float(v) for v in _joint(ctx, joint)["range"])
    if on:
        return min(min(art.get("default_turnon_ranges") or [0.5]) + KNOB_MARGIN, hi)
    off = art.get("default_turnoff_ranges") or [0.0, 0.0]
    return max(max(off) - KNOB_MARGIN, lo - 0.1)  # past the stop: pushes it onto its limit


def _knob_top(ctx: Context, joint: str) -> float:
    fixture = ctx.state["fixtures"][fixture_of_joint(ctx.state, joint)]
    return float(fixture["aabb_max"][2])


def turn_knob(ctx: Context, joint: str, on: bool, attempts: int = 2) -> SkillGen:
    """Turn a stove knob on (True) or off (False): pinch its fin (a bar across the dial, along
    the knob's x axis at angle 0) at the joint's axis, with the fingers closing across the fin,
    then yaw the hand about the knob's (vertical) axis until the joint is in the wanted range."""
    wanted = "turnon" if on else "turnoff"
    if articulation_is(ctx.state, joint, wanted):
        return True
    for attempt in range(attempts):
        j = _joint(ctx, joint)
        anchor = np.asarray(j["anchor"], dtype=np.float64)
        sign = float(np.sign(j["axis"][2])) or 1.0  # knob angle -> world yaw
        q0 = float(j["qpos"])
        # the fin runs along the knob's local x: close the fingers along its local y
        fin_y = _rot_z(sign * q0) @ np.array([0.0, 1.0, 0.0])
        ctx.yaw, ctx.orient = yaw_for_closing_along(fin_y[:2]), None
        grip_z = _knob_top(ctx, joint) - 0.02  # fingertips below the fin top, above the dial
        yield from set_gripper(ctx, OPEN, 4)
        yield from travel(ctx, np.array([anchor[0], anchor[1], grip_z + 0.06]), tol=0.01)
        yield from move(
            ctx, np.array([anchor[0], anchor[1], grip_z]), tol=0.006, max_steps=40, max_speed=0.4
        )
        yield from set_gripper(ctx, CLOSE, 12)
        start_yaw = ctx.yaw
        goal = _knob_goal(ctx, joint, on)
        hold_at = np.array([anchor[0], anchor[1], grip_z])
        for _ in range(50):
            q = float(_joint(ctx, joint)["qpos"])
            if articulation_is(ctx.state, joint, wanted) and (
                abs(q - goal) < KNOB_MARGIN / 2 or not on
            ):
                break
            # lead the knob by a bounded angle (the wrist turns at most 0.25 rad per step)
            lead = float(np.clip(goal - q, -0.4, 0.4))
            ctx.yaw = start_yaw + sign * (q - q0 + lead)
            yield action_towards(ctx, hold_at, 0.5)
        yield from set_gripper(ctx, OPEN, 6)
        yield from move(
            ctx, ctx.eef + np.array([0.0, 0.0, 0.08]), tol=0.02, max_steps=20, yaw_tol=3.2
        )
        ctx.yaw = 0.0
        if articulation_is(ctx.state, joint, wanted):
            return True
        ctx.log.append(f"turn {joint} {'on' if on else 'off'} failed (attempt {attempt + 1})")
    return False


def run_step(ctx: Context, step) -> Iterator[Action]:
    if step.skill == "pick_place":
        return pick_place(ctx, *step.args)
    if step.skill == "open":
        return open_drawer(ctx, *step.args)
    if step.skill == "close":
        return close_articulated(ctx, *step.args)
    if step.skill == "turn":
        return turn_knob(ctx, *step.args)
    raise ValueError(f"unknown skill {step.skill}")

"""Geometry of the scene for the expert: object footprints, grasp poses, wrist-safe yaws and the
height of the corridor between two points. Pure functions of the privileged state in `Context`
(metres, radians, world frame); nothing here moves the robot."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldvla_bench.policies.expert.control import Context, yaw_for_closing_along

Q7_HOME = np.pi / 4  # Panda wrist joint 7 at the start (hand yaw 0, arm straight ahead)
# switch to the other half-turn yaw when the predicted |q7| exceeds this: just past the joint
# limit (2.897 rad), between where grasps still converge (libero_spatial task 5: predicted
# 2.85-2.88, baseline 4/5) and where they stall on the limit (spatial task 1: 2.98-3.02)
Q7_SAFE = 2.93
YAW_KEEP = 0.5  # take the other yaw for continuity only when it is this much (rad) closer
# category words (a category's "_"-separated tokens) of open containers, picked by the rim;
# no "pot": LIBERO's only pots are (yellow_)moka_pot, solid, picked across the body
HOLLOW = ("bowl", "ramekin", "plate", "mug", "cup", "basket", "pan", "frypan", "drainer")


def _mat_from_quat_xyzw(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def footprint(obj: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre (3,) world, horizontal axes (2, 2) unit vectors, half widths (2,)) of an object's
    geom box projected on the table plane."""
    rot = _mat_from_quat_xyzw(obj["quat"])
    center = obj["pos"] + rot @ obj["center_local"]
    axes, widths = [], []
    for i in range(3):
        h = rot[:2, i]
        if np.linalg.norm(h) > 0.7:
            axes.append(h / np.linalg.norm(h))
            widths.append(obj["half_extents"][i])
    if len(axes) < 2:  # tilted: use the world box
        axes = [np.array([1.0, 0.0]), np.array([0.0, 1.0])]
        widths = list((obj["aabb_max"][:2] - obj["aabb_min"][:2]) / 2.0)
    return center, np.array(axes[:2]), np.array(widths[:2])


def hand_yaw(ctx: Context) -> float:
    """The current yaw of a (roughly top-down) hand, in `ctx.yaw`'s convention."""
    rot = ctx.state["robot"]["eef_xmat"]
    return float(np.arctan2(-rot[0, 0], rot[1, 0]))


def wrist_safe_yaw(ctx: Context, yaw: float, at_xy: np.ndarray) -> float:
    """`yaw` or the equivalent parallel-grasp yaw half a turn away: the other one when `yaw`
    would drive the wrist past its limit at `at_xy` (q7 ~ Q7_HOME + bearing of `at_xy` from
    the base - yaw: the base joint turns the whole arm towards the target), or when both are
    safe and the other is clearly closer to the hand's current yaw (no wrist half turn)."""
    if ctx.base_xy is None:
        return yaw
    d = np.asarray(at_xy[:2], dtype=np.float64) - ctx.base_xy
    bearing = float(np.arctan2(d[1], d[0]))
    candidates = [yaw, yaw + np.pi if yaw < 0 else yaw - np.pi]
    q7 = [abs(Q7_HOME + bearing - c) for c in candidates]
    safe = [c for c, q in zip(candidates, q7, strict=True) if q <= Q7_SAFE]
    if not safe:
        return float(candidates[int(np.argmin(q7))])
    if len(safe) == 1:
        return float(safe[0])
    now = hand_yaw(ctx)
    turn = [abs((c - now + np.pi) % (2 * np.pi) - np.pi) for c in safe]
    # the usual yaw unless the other is clearly closer (a tie at +-pi/2 keeps the usual one)
    return float(safe[1] if turn[1] < turn[0] - YAW_KEEP else safe[0])


def is_hollow(obj: dict[str, Any]) -> bool:
    """Whether an object is an open container (rim grasp), by whole category words."""
    return any(word in HOLLOW for word in obj["category"].lower().split("_"))


def grasp_pose(ctx: Context, name: str) -> tuple[np.ndarray, float]:
    """Where to put the grasp point, and with which yaw, to pick `name`."""
    obj = ctx.entity(name)
    center, axes, widths = footprint(obj)
    top, bottom = float(obj["aabb_max"][2]), float(obj["aabb_min"][2])
    height = top - bottom
    if is_hollow(obj) and min(widths) * 2 > 0.06:
        # rim grasp: fingers straddle the wall on the side with the most free space
        radius = float(min(widths))
        best, best_clear = None, -np.inf
        for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):
            d = np.array([np.cos(angle), np.sin(angle)])
            point = center[:2] + d * (radius - 0.012)
            clear = _clearance(ctx, point, exclude=(name,))
            # prefer the side facing the robot (-x), which keeps the arm out of the scene
            score = min(clear, 0.08) - 0.01 * d[0]
            if score > best_clear:
                best, best_clear = d, score
        point = center[:2] + best * (radius - 0.012)
        z = top - 0.018 if height > 0.03 else bottom + 0.008
        return np.array([point[0], point[1], z]), yaw_for_closing_along(best)
    i = int(np.argmin(widths))
    z = (
        max(bottom + 0.012, top - 0.035)
        if height > 0.05
        else max(bottom + 0.01, bottom + height / 2)
    )
    return np.array([center[0], center[1], z]), yaw_for_closing_along(axes[i])


def _clearance(ctx: Context, point_xy: np.ndarray, exclude: tuple[str, ...] = ()) -> float:
    """Horizontal distance from a point to the nearest other object's box."""
    best = np.inf
    for key in ("objects", "fixtures"):
        for name, obj in ctx.state[key].items():
            if name in exclude:
                continue
            lo, hi = obj["aabb_min"][:2], obj["aabb_max"][:2]
            d = np.maximum(np.maximum(lo - point_xy, point_xy - hi), 0.0)
            best = min(best, float(np.linalg.norm(d)))
    return best


def corridor_top(ctx: Context, start_xy, goal_xy, exclude=(), width: float = 0.05) -> float:
    """Highest top of anything whose box comes within `width` of the segment start -> goal."""
    start_xy, goal_xy = np.asarray(start_xy[:2]), np.asarray(goal_xy[:2])
    ts = np.linspace(0.0, 1.0, 12)
    points = start_xy[None] + ts[:, None] * (goal_xy - start_xy)[None]
    top = -np.inf
    for key in ("objects", "fixtures"):
        for name, obj in ctx.state[key].items():
            if name in exclude:
                continue
            lo, hi = obj["aabb_min"][:2] - width, obj["aabb_max"][:2] + width
            if np.any(np.all((points >= lo) & (points <= hi), axis=1)):
                top = max(top, float(obj["aabb_max"][2]))
    return top

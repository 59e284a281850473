"""Closed-loop skills over the privileged state, written as generators of 7-d actions.

Each skill is a generator: it reads `ctx.state` (refreshed by the policy before every step) and
yields one action [dx, dy, dz, droll, dpitch, dyaw, gripper] in [-1, 1] per step, for robosuite's
OSC_POSE controller (1.0 = 0.05 m / 0.5 rad per step; rotation deltas in the world frame;
gripper -1 open, +1 close). A skill returns True when it believes it achieved its step.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from worldvla_bench.policies.expert.planner import articulation_is, fixture_of_joint

Action = np.ndarray
SkillGen = Generator[Action, None, bool]

OPEN, CLOSE = -1.0, 1.0
POS_GAIN = 15.0  # action per metre of error (1.0 = 5 cm/step at most)
ROT_GAIN = 2.0  # action per radian of error (1.0 = 0.5 rad/step at most)
MAX_ROT = 0.5  # largest rotation action (0.25 rad/step)
FINGER_REACH = 0.08  # fully open finger gap (m)
GRIP_RATE = 0.25  # change of the gripper's internal target per policy step (0.01 x 25 substeps)
BASE_BEHIND_HOME = 0.45  # the arm's base sits this far (m, along -x) behind the hand's start
Q7_HOME = np.pi / 4  # Panda wrist joint 7 at the start (hand yaw 0, arm straight ahead)
# switch to the other half-turn yaw when the predicted |q7| exceeds this: just past the joint
# limit (2.897 rad), between where grasps still converge (libero_spatial task 5: predicted
# 2.85-2.88, baseline 4/5) and where they stall on the limit (spatial task 1: 2.98-3.02)
Q7_SAFE = 2.93
YAW_KEEP = 0.5  # take the other yaw for continuity only when it is this much (rad) closer
# gripper pointing down, fingers closing along world y: the canonical grasp frame (site axes)
DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
# category words (a category's "_"-separated tokens) of open containers, picked by the rim;
# no "pot": LIBERO's only pots are (yellow_)moka_pot, solid, picked across the body
HOLLOW = ("bowl", "ramekin", "plate", "mug", "cup", "basket", "pan", "frypan", "drainer")


class Context:
    """What skills share: the latest privileged state and the gripper command."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.grip = OPEN
        self.grip_target = -1.0  # the gripper's integrated target (-1 open, +1 closed)
        self.yaw = 0.0  # desired yaw of the grasp frame about world z (rad)
        self.orient: np.ndarray | None = None  # explicit grasp-frame rotation (overrides yaw)
        self.base_xy: np.ndarray | None = None  # estimated arm base (set on the first state)
        self.log: list[str] = []

    @property
    def eef(self) -> np.ndarray:
        return self.state["robot"]["eef_pos"]

    @property
    def gripper_width(self) -> float:
        q = self.state["robot"]["gripper_qpos"]
        return float(q[0] - q[1])

    def entity(self, name: str) -> dict[str, Any]:
        for key in ("objects", "fixtures"):
            if name in self.state[key]:
                return self.state[key][name]
        raise KeyError(name)

    def table_z(self) -> float:
        """Height of the supporting surface (the lowest object bottom in the scene)."""
        bottoms = [o["aabb_min"][2] for o in self.state["objects"].values()]
        return float(min(bottoms)) if bottoms else 0.0

    def highest_top(self, exclude: tuple[str, ...] = ()) -> float:
        tops = [
            o["aabb_max"][2]
            for key in ("objects", "fixtures")
            for name, o in self.state[key].items()
            if name not in exclude
        ]
        return float(max(tops)) if tops else 0.0


# -- low-level control ----------------------------------------------------------------------


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _log_rot(mat: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix."""
    cos = np.clip((np.trace(mat) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-6:
        return np.zeros(3)
    if np.pi - angle < 1e-4:
        # near pi: axis from the symmetric part
        axis = np.sqrt(np.maximum((np.diag(mat) + 1.0) / 2.0, 0.0))
        axis *= np.sign(
            np.array([mat[2, 1] - mat[1, 2], mat[0, 2] - mat[2, 0], mat[1, 0] - mat[0, 1]]) + 1e-12
        )
        return axis * angle
    vec = np.array([mat[2, 1] - mat[1, 2], mat[0, 2] - mat[2, 0], mat[1, 0] - mat[0, 1]])
    return vec / (2.0 * np.sin(angle)) * angle


def action_towards(ctx: Context, target: np.ndarray, max_speed: float = 1.0) -> Action:
    """One OSC_POSE action servoing the grasp point to `target` and the hand to `ctx.yaw`."""
    action = np.zeros(7)
    err = np.asarray(target, dtype=np.float64) - ctx.eef
    delta = err * POS_GAIN
    norm = np.linalg.norm(delta)
    if norm > max_speed:
        delta *= max_speed / norm
    action[:3] = delta
    current = ctx.state["robot"]["eef_xmat"]
    rot_err = _log_rot(_desired_rot(ctx) @ current.T)  # world frame
    rot = rot_err * ROT_GAIN
    norm = np.linalg.norm(rot)
    if norm > MAX_ROT:  # turn gently: big wrist motions drive the arm into its joint limits
        rot *= MAX_ROT / norm
    action[3:6] = rot
    action[6] = ctx.grip
    return action


def move(
    ctx: Context,
    target,
    tol: float = 0.008,
    max_steps: int = 80,
    max_speed: float = 1.0,
    yaw_tol: float = 0.1,
) -> SkillGen:
    """Servo to `target` (callable of ctx or fixed point) until within `tol` (m)."""
    for _ in range(max_steps):
        point = target(ctx) if callable(target) else target
        if np.linalg.norm(np.asarray(point) - ctx.eef) < tol and _yaw_error(ctx) < yaw_tol:
            return True
        yield action_towards(ctx, point, max_speed)
    return False


def _desired_rot(ctx: Context) -> np.ndarray:
    return ctx.orient if ctx.orient is not None else _rot_z(ctx.yaw) @ DOWN


def _yaw_error(ctx: Context) -> float:
    return float(np.linalg.norm(_log_rot(_desired_rot(ctx) @ ctx.state["robot"]["eef_xmat"].T)))


def _axis_angle_mat(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def facing(direction: np.ndarray) -> np.ndarray:
    """Grasp frame pointing horizontally along `direction` (fingers closing vertically)."""
    d = np.array([direction[0], direction[1], 0.0])
    d /= np.linalg.norm(d)
    axis = np.cross(np.array([0.0, 0.0, -1.0]), d)
    yaw0 = _rot_z(yaw_for_closing_along(d[:2]))  # fingers close along d, then tip over: vertical
    return _axis_angle_mat(axis, np.pi / 2) @ yaw0 @ DOWN


def set_gripper(ctx: Context, command: float, steps: int = 12) -> SkillGen:
    """Open or close in place; closing stops early once the fingers stop moving."""
    ctx.grip = command
    hold = ctx.eef.copy()
    last = ctx.gripper_width
    still = 0
    for i in range(steps):
        yield action_towards(ctx, hold, 0.3)
        width = ctx.gripper_width
        still = still + 1 if abs(width - last) < 5e-4 else 0
        last = width
        if i >= 4 and still >= 2:
            break
    return True


def set_width(ctx: Context, width: float, steps: int = 12) -> SkillGen:
    """Pre-shape the fingers to a gap of about `width` (m), then keep it (gripper command 0).

    robosuite's Panda gripper integrates the command: each policy step moves its internal
    target by 0.25 towards -1 (open) or +1 (closed); a 0 command holds it. We track that target
    (`ctx.grip_target`, updated by the policy for every emitted action) and stop on the value
    whose finger gap is closest to `width` (gap ~ 0.08 m * (1 - target) / 2).
    """
    goal = float(np.clip(1.0 - 2.0 * width / FINGER_REACH, -1.0, 1.0))
    hold_at = ctx.eef.copy()
    for _ in range(steps):
        err = goal - ctx.grip_target
        if abs(err) <= GRIP_RATE / 2:
            break
        ctx.grip = CLOSE if err > 0 else OPEN
        yield action_towards(ctx, hold_at, 0.3)
    ctx.grip = 0.0
    for _ in range(4):  # let the fingers get there
        yield action_towards(ctx, hold_at, 0.3)
    return True


def hold(ctx: Context, steps: int) -> SkillGen:
    here = ctx.eef.copy()
    for _ in range(steps):
        yield action_towards(ctx, here, 0.3)
    return True


# -- geometry helpers -----------------------------------------------------------------------


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


def yaw_for_closing_along(direction_xy: np.ndarray) -> float:
    """Grasp-frame yaw (rad, within +-pi/2) whose finger closing axis is `direction_xy`."""
    # at yaw 0 the fingers close along world y
    angle = np.arctan2(direction_xy[1], direction_xy[0]) - np.pi / 2
    return float((angle + np.pi / 2) % np.pi - np.pi / 2)


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

"""Low-level control for the expert's skills: the shared `Context`, and moves towards a pose.

Actions are 7-d [dx, dy, dz, droll, dpitch, dyaw, gripper] in [-1, 1] for robosuite's OSC_POSE
controller (1.0 = 0.05 m / 0.5 rad per step; rotation deltas in the world frame; gripper -1
open, +1 close). Positions in metres, angles in radians, world frame.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

Action = np.ndarray
SkillGen = Generator[Action, None, bool]

OPEN, CLOSE = -1.0, 1.0
POS_GAIN = 15.0  # action per metre of error (1.0 = 5 cm/step at most)
ROT_GAIN = 2.0  # action per radian of error (1.0 = 0.5 rad/step at most)
MAX_ROT = 0.5  # largest rotation action (0.25 rad/step)
GRIP_RATE = 0.25  # change of the gripper's internal target per policy step (0.01 x 25 substeps)
BASE_BEHIND_HOME = 0.45  # the arm's base sits this far (m, along -x) behind the hand's start
# gripper pointing down, fingers closing along world y: the canonical grasp frame (site axes)
DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


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


def yaw_for_closing_along(direction_xy: np.ndarray) -> float:
    """Grasp-frame yaw (rad, within +-pi/2) whose finger closing axis is `direction_xy`."""
    # at yaw 0 the fingers close along world y
    angle = np.arctan2(direction_xy[1], direction_xy[0]) - np.pi / 2
    return float((angle + np.pi / 2) % np.pi - np.pi / 2)


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


def hold(ctx: Context, steps: int) -> SkillGen:
    here = ctx.eef.copy()
    for _ in range(steps):
        yield action_towards(ctx, here, 0.3)
    return True

"""vla-eval's declared specs (`vla_eval/specs.py`, 0.8.0): ours, and converting a server's to ours.

A vla-eval model server declares its action format in its hello reply as
`{component: {"name", "dims", "format"[, "range", "accepts", "description"]}}`
(`DimSpec.to_dict()`). Our action convention is LIBERO's: 7 floats, [dx, dy, dz] position delta,
[rx, ry, rz] axis-angle rotation delta (rad), gripper -1 open / +1 close. `ActionConversion`
turns a server's (K, D) actions into that, component by component, or refuses the spec with one
line naming it (`UnsupportedActionSpec`).

What converts (everything else is refused):

- `position` (3-d): `delta_xyz`;
- `rotation`: `axis_angle` (3), `euler_xyz` (3, extrinsic XYZ, rad), `quaternion_xyzw` (4);
- `gripper` (1-d): `binary_close_positive`, `binary_close_negative` (negated), `continuous_01`
  (0 close, 1 open: 1 - 2g), `binary_close_01` (1 close: 2g - 1), `raw` (as is);
- `actions` (the whole vector): `raw`, taken as is (it must be 7-d: LIBERO's convention, as
  vla-eval's LIBERO benchmark applies it).

A component the server does not declare is taken in LIBERO's convention, as vla-eval's LIBERO
benchmark does (it applies the action as sent). Components are read in the order position,
rotation, gripper. The gripper is then made binary (`-1` if < 0 else `+1`), as
`LIBEROBenchmark.step` does before stepping (`vla_eval/benchmarks/libero/benchmark.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from worldvla_bench.errors import BenchError

# DimSpec.to_dict() of vla_eval.specs constants (POSITION_DELTA, ROTATION_AA, GRIPPER_CLOSE_POS,
# IMAGE_RGB, STATE_EEF_POS_AA_GRIP, LANGUAGE): what our server declares.
POSITION_DELTA = {"name": "position", "dims": 3, "format": "delta_xyz", "range": [-1, 1]}
ROTATION_AA = {"name": "rotation", "dims": 3, "format": "axis_angle", "range": [-3.15, 3.15]}
GRIPPER_CLOSE_POS = {
    "name": "gripper",
    "dims": 1,
    "format": "binary_close_positive",
    "range": [-1, 1],
}
IMAGE_RGB = {"name": "image", "dims": 0, "format": "rgb_hwc_uint8"}
STATE_EEF_POS_AA_GRIP = {"name": "state", "dims": 8, "format": "eef_pos3_axisangle3_gripper2"}
LANGUAGE = {"name": "language", "dims": 0, "format": "language"}

#: Our action convention as vla-eval declares LIBERO's (`LIBEROBenchmark.get_action_spec`).
OUR_ACTION_SPEC = {
    "position": POSITION_DELTA,
    "rotation": ROTATION_AA,
    "gripper": GRIPPER_CLOSE_POS,
}

_ROTATION_DIMS = {"axis_angle": 3, "euler_xyz": 3, "quaternion_xyzw": 4}
_GRIPPER_FORMATS = (
    "binary_close_positive",
    "binary_close_negative",
    "continuous_01",
    "binary_close_01",
    "raw",
)


class UnsupportedActionSpec(BenchError):
    """A server's action spec we cannot turn into LIBERO's 7-d delta action."""


def observation_spec(agentview: bool, wrist: bool) -> dict[str, dict[str, Any]]:
    """The observation spec our server declares: the cameras the policy reads, named as
    vla-eval's LIBERO benchmark names them (`agentview`, `wrist`), the language and the state."""
    spec = {"language": LANGUAGE, "state": STATE_EEF_POS_AA_GRIP}
    if agentview:
        spec["agentview"] = IMAGE_RGB
    if wrist:
        spec["wrist"] = IMAGE_RGB
    return spec


# -- rotations, ported from vla_eval/rotation.py (pure numpy) -----------------------------------
def euler_xyz_to_matrix(euler: np.ndarray) -> np.ndarray:
    """Extrinsic XYZ Euler angles (rad) -> 3x3 rotation matrix, R = Rz @ Ry @ Rx
    (`vla_eval.rotation.euler_xyz_to_matrix`, scipy's `from_euler('xyz', ...)`)."""
    x, y, z = (float(v) for v in euler)
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    return np.array(
        [
            [cy * cz, sx * sy * cz - cx * sz, cx * sy * cz + sx * sz],
            [cy * sz, sx * sy * sz + cx * cz, cx * sy * sz - sx * cz],
            [-sy, sx * cy, cx * cy],
        ]
    )


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> quaternion [x, y, z, w] (Shepperd's method,
    `vla_eval.rotation.matrix_to_quat`)."""
    m = np.asarray(m, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        w, x = 0.25 * s, (m[2, 1] - m[1, 2]) / s
        y, z = (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x = (m[2, 1] - m[1, 2]) / s, 0.25 * s
        y, z = (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s
        y, z = 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s
        y, z = (m[1, 2] + m[2, 1]) / s, 0.25 * s
    return np.array([x, y, z, w])


def quat_to_axis_angle_shortest(quat_xyzw: np.ndarray) -> np.ndarray:
    """Unit quaternion [x, y, z, w] -> axis-angle (rad), the rotation of angle <= pi
    (`vla_eval.rotation.quat_to_axisangle`: the antipode with w >= 0). Not robosuite's
    `quat2axisangle` (`envs.libero_env.quat_to_axis_angle_robosuite`, angle in [0, 2*pi])."""
    q = np.asarray(quat_xyzw, dtype=np.float64)
    q = q / np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    w = float(np.clip(q[3], -1.0, 1.0))
    sin_half = np.sqrt(1.0 - w * w)
    if sin_half < 1e-8:
        return np.zeros(3)
    return q[:3] / sin_half * 2.0 * np.arccos(w)


def _rotation_to_axis_angle(kind: str, values: np.ndarray) -> np.ndarray:
    if kind == "axis_angle":
        return values
    if kind == "euler_xyz":
        return np.stack(
            [quat_to_axis_angle_shortest(matrix_to_quat(euler_xyz_to_matrix(v))) for v in values]
        )
    return np.stack([quat_to_axis_angle_shortest(v) for v in values])  # quaternion_xyzw


def _gripper_close_positive(kind: str, g: np.ndarray) -> np.ndarray:
    if kind == "binary_close_negative":
        return -g
    if kind == "continuous_01":  # 0 close, 1 open (vla_eval/model_servers/groot.py)
        return 1.0 - 2.0 * g
    if kind == "binary_close_01":  # 1 close, 0 open
        return 2.0 * g - 1.0
    return g  # binary_close_positive, raw


def _describe(name: str, spec: Mapping[str, Any]) -> str:
    return f"{name}: {spec.get('format')!r} ({spec.get('dims')}-d)"


class ActionConversion:
    """A vla-eval server's declared action spec -> LIBERO's 7-d convention (see the module doc)."""

    def __init__(self, action_spec: Mapping[str, Mapping[str, Any]] | None) -> None:
        spec = dict(action_spec or {})
        self.spec = spec
        self.raw = False
        self.parts: list[tuple[str, str, int]] = []  # (component, format, dims) in order
        unknown = [
            name for name in spec if name not in ("position", "rotation", "gripper", "actions")
        ]
        if unknown:
            name = unknown[0]
            raise self._refuse(name, spec[name], "not a component of LIBERO's action")
        if "actions" in spec:
            whole = spec["actions"]
            if len(spec) > 1 or whole.get("format") != "raw" or int(whole.get("dims") or 7) != 7:
                raise self._refuse("actions", whole, "only a 'raw' 7-d whole vector converts")
            self.raw = True
            return
        defaults = OUR_ACTION_SPEC
        for name in ("position", "rotation", "gripper"):
            part = spec.get(name, defaults[name])
            kind, dims = str(part.get("format")), int(part.get("dims") or 0)
            if name == "position" and (kind, dims) != ("delta_xyz", 3):
                raise self._refuse(name, part, "only 'delta_xyz' (3-d) converts")
            if name == "rotation" and _ROTATION_DIMS.get(kind) != dims:
                raise self._refuse(
                    name, part, "convertible: axis_angle (3), euler_xyz (3), quaternion_xyzw (4)"
                )
            if name == "gripper" and (kind not in _GRIPPER_FORMATS or dims != 1):
                raise self._refuse(name, part, f"convertible (1-d): {', '.join(_GRIPPER_FORMATS)}")
            self.parts.append((name, kind, dims))
        self.dims = sum(dims for _, _, dims in self.parts)

    @staticmethod
    def _refuse(name: str, spec: Mapping[str, Any], why: str) -> UnsupportedActionSpec:
        return UnsupportedActionSpec(
            f"cannot convert the server's action spec {_describe(name, spec)} to LIBERO's 7-d "
            f"delta action [dx, dy, dz, axis-angle (3), gripper -1 open/+1 close]: {why}"
        )

    @property
    def identity(self) -> bool:
        """True when the server already speaks our convention (nothing to convert)."""
        return self.raw or [(k, f) for k, f, _ in self.parts] == [
            ("position", "delta_xyz"),
            ("rotation", "axis_angle"),
            ("gripper", "binary_close_positive"),
        ]

    def __call__(self, actions: Any) -> np.ndarray:
        """(D,) or (K, D) actions as the server declared them -> (K, 7) float64, binary gripper."""
        array = np.asarray(actions, dtype=np.float64)
        if array.ndim == 1:
            array = array[None]
        width = 7 if self.raw else self.dims
        if array.ndim != 2 or array.shape[1] != width:
            raise UnsupportedActionSpec(
                f"the server sent actions of shape {tuple(np.shape(actions))}; its spec "
                f"declares {width} numbers per action"
            )
        if self.raw:
            out = array.copy()
        else:
            pieces, start = [], 0
            for name, kind, dims in self.parts:
                values = array[:, start : start + dims]
                start += dims
                if name == "rotation":
                    values = _rotation_to_axis_angle(kind, values)
                elif name == "gripper":
                    values = _gripper_close_positive(kind, values)
                pieces.append(values)
            out = np.concatenate(pieces, axis=1)
        gripper = out[:, 6]
        out[:, 6] = np.where(np.isnan(gripper), gripper, np.where(gripper < 0, -1.0, 1.0))
        return out

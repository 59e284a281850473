"""The privileged channel: ground-truth scene state for scripted policies (the expert).

`privileged_state(robosuite_env)` reads the inner LIBERO/robosuite env and returns plain Python /
numpy values. Learned policies never see it; the engine passes it as `obs['privileged']` only to
policies that declare `requires_privileged_state = True`.

It exposes what a planner needs and nothing that decides success: the BDDL goal as data, poses,
sizes, joint positions and the fixtures' articulation ranges. It never calls the success oracle
(`_check_success`, `check_success`) nor LIBERO's predicate/object-state `check_*` functions.

Frames and units: every position is in the MuJoCo world frame, in metres; quaternions are unit
quaternions in (x, y, z, w) order (robosuite's convention), world frame; 3x3 rotation matrices map
the local frame to the world frame; joint positions are in metres (slide) or radians (hinge).
The table top is at z ~ 0.9 m; the robot base is at x ~ -0.66 m looking along +x.

Schema (all arrays float64 numpy):

    {
      "goal": [["in", "akita_black_bowl_1", "wooden_cabinet_1_top_region"], ...],
              # parsed_problem['goal_state'], predicate names lower-cased (on, in, open, close,
              # turnon, turnoff); the goal is the conjunction of these
      "obj_of_interest": ["akita_black_bowl_1", ...],
      "objects": {name: {              # movable objects (objects_dict)
          "pos": (3,), "quat": (4,) xyzw,   # the object's root body frame
          "category": str,                  # LIBERO class, snake case ("akita_black_bowl")
          "aabb_min": (3,), "aabb_max": (3,),  # world-axis-aligned box around its collision geoms
          "half_extents": (3,),        # half sizes of the collision geoms' box in the body frame
          "center_local": (3,),        # centre of that box in the body frame
      }},
      "fixtures": {name: {             # fixed objects (fixtures_dict): cabinets, stoves, racks, ...
          "pos", "quat", "category", "aabb_min", "aabb_max", "half_extents", "center_local",
          "articulation": {"default_open_ranges": [lo, hi], "default_close_ranges": [...],
                           "default_turnon_ranges": [...], ...},   # LIBERO's ranges, as data
          "joints": {joint_name: {
              "type": "slide" | "hinge",
              "qpos": float,           # m or rad
              "range": (2,),           # joint limits from the model
              "axis": (3,),            # joint axis, world frame (unit)
              "anchor": (3,),          # a point on the joint axis, world frame
              "body": str,             # the moving body driven by this joint
              "handle_pos": (3,),      # centre of the moving body's handle geom, world frame
              "handle_half_extents": (3,),  # that geom's world-axis-aligned half sizes
          }},
      }},
      "sites": {name: {                # named regions (object_sites_dict)
          "pos": (3,), "xmat": (3, 3),  # site frame in world
          "size": (3,),                # half sizes in the site frame (LIBERO's region size)
          "parent": str | None,        # object/fixture the region belongs to (None: the table)
          "joints": [joint names],     # articulation that opens/closes this region (drawers)
      }},
      "robot": {"eef_pos": (3,), "eef_quat": (4,) xyzw, "eef_xmat": (3, 3),
                "gripper_qpos": (2,)},  # finger joint positions (m), ~(+0.04, -0.04) open
    }

Geometry (which geoms belong to which body, which geom is a handle) is computed once per
simulator model and cached on the env, so a call costs ~0.1 ms of numpy per object.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_CACHE_ATTR = "_worldvla_privileged_cache"
_SIGNS = np.array(
    [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
)


def _snake(name: str) -> str:
    return "_".join(re.sub(r"([A-Z])", r" \1", name).split()).lower()


def _raw(sim) -> tuple[Any, Any]:
    """The raw mujoco (MjModel, MjData) behind robosuite's binding wrappers."""
    model, data = sim.model, sim.data
    return getattr(model, "_model", model), getattr(data, "_data", data)


def _subtree_bodies(model, root: int) -> list[int]:
    bodies = [root]
    for body in range(root + 1, model.nbody):
        parent = int(model.body_parentid[body])
        if parent in bodies:
            bodies.append(body)
    return bodies


def _collision_geoms(model, bodies: list[int]) -> np.ndarray:
    geoms = [
        g
        for g in range(model.ngeom)
        if int(model.geom_bodyid[g]) in bodies
        and (model.geom_contype[g] != 0 or model.geom_conaffinity[g] != 0)
    ]
    if not geoms:  # purely visual objects: fall back to every geom
        geoms = [g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in bodies]
    return np.asarray(geoms, dtype=np.int64)


def _geom_corners(model, data, geoms: np.ndarray) -> np.ndarray:
    """World positions of the 8 corners of each geom's local bounding box, (n, 8, 3)."""
    if len(geoms) == 0:
        return np.zeros((0, 8, 3))
    aabb = np.asarray(model.geom_aabb[geoms], dtype=np.float64)  # (n, 6): centre, half sizes
    local = aabb[:, None, :3] + _SIGNS[None] * aabb[:, None, 3:]  # (n, 8, 3)
    xmat = np.asarray(data.geom_xmat[geoms], dtype=np.float64).reshape(-1, 3, 3)
    xpos = np.asarray(data.geom_xpos[geoms], dtype=np.float64)
    return np.einsum("nij,nkj->nki", xmat, local) + xpos[:, None, :]


def _build_cache(env) -> dict[str, Any]:
    model, data = _raw(env.sim)
    cache: dict[str, Any] = {"model_id": id(env.sim.model), "bodies": {}, "joints": {}}
    names = list(env.objects_dict) + list(env.fixtures_dict)
    for name in names:
        root = int(env.obj_body_id[name])
        bodies = _subtree_bodies(model, root)
        geoms = _collision_geoms(model, bodies)
        corners = _geom_corners(model, data, geoms).reshape(-1, 3)
        # box of the geoms in the root body frame (constant for rigid objects; fixtures with
        # moving parts: measured at the current joint positions)
        rot = np.asarray(data.xmat[root], dtype=np.float64).reshape(3, 3)
        local = (corners - data.xpos[root]) @ rot if len(corners) else np.zeros((1, 3))
        lo, hi = local.min(axis=0), local.max(axis=0)
        cache["bodies"][name] = {
            "root": root,
            "geoms": geoms,
            "half_extents": (hi - lo) / 2.0,
            "center_local": (hi + lo) / 2.0,
        }
    for name, fixture in env.fixtures_dict.items():
        for joint_name in list(getattr(fixture, "joints", []) or []):
            try:
                jid = int(model.joint(joint_name).id)
            except KeyError:
                continue
            jtype = int(model.jnt_type[jid])
            if jtype not in (2, 3):  # slide, hinge
                continue
            body = int(model.jnt_bodyid[jid])
            geoms = _collision_geoms(model, _subtree_bodies(model, body))
            cache["joints"][joint_name] = {
                "fixture": name,
                "id": jid,
                "type": "slide" if jtype == 2 else "hinge",
                "qposadr": int(model.jnt_qposadr[jid]),
                "body": body,
                "body_name": model.body(body).name,
                "handle_geom": _pick_handle(env, fixture, model, data, jid, geoms),
            }
    return cache


def _pick_handle(env, fixture, model, data, jid: int, geoms: np.ndarray) -> int:
    """The geom of a moving part a hand grasps: furthest out along the opening direction
    (drawers), or furthest from the hinge axis (doors, knobs)."""
    if len(geoms) == 0:
        return -1
    centers = np.asarray(data.geom_xpos[geoms], dtype=np.float64)
    volumes = np.prod(np.asarray(model.geom_aabb[geoms, 3:], dtype=np.float64), axis=1)
    axis = np.asarray(data.xaxis[jid], dtype=np.float64)
    anchor = np.asarray(data.xanchor[jid], dtype=np.float64)
    if int(model.jnt_type[jid]) == 2:  # slide: outermost along the opening direction
        score = centers @ (axis * _opening_sign(fixture))
    else:
        rel = centers - anchor
        score = np.linalg.norm(rel - np.outer(rel @ axis, axis), axis=1)
    # among the outermost geoms (within 5 mm), the smallest: the handle, not the front panel
    best = score.max()
    candidates = np.flatnonzero(score >= best - 0.005)
    return int(geoms[candidates[np.argmin(volumes[candidates])]])


def _opening_sign(fixture) -> float:
    """+1 if opening increases the joint position, -1 if it decreases it."""
    art = getattr(fixture, "object_properties", {}).get("articulation", {})
    opened, closed = art.get("default_open_ranges") or [], art.get("default_close_ranges") or []
    if opened and closed:
        return 1.0 if np.mean(opened) > np.mean(closed) else -1.0
    return 1.0


def _cache(env) -> dict[str, Any]:
    cache = getattr(env, _CACHE_ATTR, None)
    if cache is None or cache["model_id"] != id(env.sim.model):
        cache = _build_cache(env)
        setattr(env, _CACHE_ATTR, cache)
    return cache


def _quat_xyzw(wxyz) -> np.ndarray:
    q = np.asarray(wxyz, dtype=np.float64)
    return np.array([q[1], q[2], q[3], q[0]])


def _body_entry(env, cache, model, data, name: str, obj) -> dict[str, Any]:
    info = cache["bodies"][name]
    root = info["root"]
    corners = _geom_corners(model, data, info["geoms"]).reshape(-1, 3)
    pos = np.array(data.xpos[root], dtype=np.float64)
    return {
        "pos": pos,
        "quat": _quat_xyzw(data.xquat[root]),
        "category": getattr(obj, "category_name", None) or _snake(type(obj).__name__),
        "aabb_min": corners.min(axis=0) if len(corners) else pos.copy(),
        "aabb_max": corners.max(axis=0) if len(corners) else pos.copy(),
        "half_extents": info["half_extents"].copy(),
        "center_local": info["center_local"].copy(),
    }


def privileged_state(robosuite_env) -> dict[str, Any]:
    """Ground-truth state of a LIBERO scene; see the module docstring for the schema."""
    env = robosuite_env
    cache = _cache(env)
    model, data = _raw(env.sim)
    problem = env.parsed_problem
    goal = [[str(term).lower() for term in pred] for pred in problem.get("goal_state", [])]

    objects = {
        name: _body_entry(env, cache, model, data, name, obj)
        for name, obj in env.objects_dict.items()
    }
    fixtures: dict[str, Any] = {}
    for name, fixture in env.fixtures_dict.items():
        entry = _body_entry(env, cache, model, data, name, fixture)
        art = getattr(fixture, "object_properties", {}).get("articulation", {})
        entry["articulation"] = {k: [float(x) for x in v] for k, v in art.items() if v}
        entry["joints"] = {}
        fixtures[name] = entry
    for joint_name, info in cache["joints"].items():
        jid = info["id"]
        handle = info["handle_geom"]
        if handle >= 0:
            hc = _geom_corners(model, data, np.array([handle]))[0]
            handle_pos = np.array(data.geom_xpos[handle], dtype=np.float64)
            handle_half = (hc.max(axis=0) - hc.min(axis=0)) / 2.0
        else:
            handle_pos = np.array(data.xpos[info["body"]], dtype=np.float64)
            handle_half = np.zeros(3)
        fixtures[info["fixture"]]["joints"][joint_name] = {
            "type": info["type"],
            "qpos": float(data.qpos[info["qposadr"]]),
            "range": np.array(model.jnt_range[jid], dtype=np.float64),
            "axis": np.array(data.xaxis[jid], dtype=np.float64),
            "anchor": np.array(data.xanchor[jid], dtype=np.float64),
            "body": info["body_name"],
            "handle_pos": handle_pos,
            "handle_half_extents": handle_half,
        }

    sites: dict[str, Any] = {}
    for name, site in env.object_sites_dict.items():
        sid = model.site(name).id
        sites[name] = {
            "pos": np.array(data.site_xpos[sid], dtype=np.float64),
            "xmat": np.array(data.site_xmat[sid], dtype=np.float64).reshape(3, 3),
            "size": np.asarray(site.size, dtype=np.float64).copy(),
            "parent": site.parent_name,
            "joints": list(site.joints or []),
        }

    robot = env.robots[0]
    eef_site = (
        robot.eef_site_id if hasattr(robot, "eef_site_id") else model.site("gripper0_grip_site").id
    )
    if isinstance(eef_site, dict):  # robosuite >= 1.5 keys it by arm
        eef_site = next(iter(eef_site.values()))
    eef_xmat = np.array(data.site_xmat[eef_site], dtype=np.float64).reshape(3, 3)
    hand = getattr(getattr(robot, "robot_model", None), "eef_name", "gripper0_eef")
    body_quat = np.array(data.xquat[model.body(hand).id], dtype=np.float64)  # as robot0_eef_quat
    gripper_qpos = np.array(
        [
            data.qpos[model.jnt_qposadr[model.joint(j).id]]
            for j in ("gripper0_finger_joint1", "gripper0_finger_joint2")
        ],
        dtype=np.float64,
    )
    return {
        "goal": goal,
        "obj_of_interest": [str(x) for x in problem.get("obj_of_interest", [])],
        "objects": objects,
        "fixtures": fixtures,
        "sites": sites,
        "robot": {
            "eef_pos": np.array(data.site_xpos[eef_site], dtype=np.float64),
            "eef_quat": _quat_xyzw(body_quat),
            "eef_xmat": eef_xmat,
            "gripper_qpos": gripper_qpos,
        },
    }

"""Named observation profiles: how a policy family prepares env observations and reads its actions.

A policy declares its profile by name (`Policy.observation_profile`); the profile says which
cameras it reads, how images are cropped and resized, how many frames of history go into the
prompt, and how the gripper value the model emits maps to the env's convention (-1 open,
+1 close). The published evaluation scripts differ exactly in these details, and a wrong one
silently gives 0% success (DESIGN 6), so they live here as data, next to small functions that
apply them, for every policy family to reuse.

Env images are already upright (rotated 180 degrees from LIBERO's raw render, see
`worldvla_bench.envs.libero_env`), so no profile rotates again.

- `libero`: the env's observation as is (the default of `Policy`).
- `worldvla`: WorldVLA's LIBERO eval: the third-person camera only, resized to the model's image
  size; the prompt holds the previous env step's frame and the current one (at the first call
  only the current one); the gripper goes to the env as decoded (about +-0.996, neither
  binarised nor inverted). `worldvla_policy_call`: the same with the frame of the previous
  policy call as the earlier frame (an ablation).
- `openvla`: OpenVLA's `run_libero_eval.py`: third-person camera resized to 224, centre crop of
  90% of the area (then resized back to 224) for checkpoints trained with crop augmentation;
  gripper normalised from [0, 1] to [-1, 1], binarised to its sign, then inverted
  (OpenVLA's data uses 0 = close, 1 = open).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from worldvla_bench.registry import Registry

GRIPPER_AS_DECODED = "as_decoded"
GRIPPER_OPENVLA = "normalize_invert"
GRIPPER_TRANSFORMS = (GRIPPER_AS_DECODED, GRIPPER_OPENVLA)
FIRST_HISTORY = ("current_only", "repeat_current")


@dataclass(frozen=True)
class ObservationProfile:
    """How observations are prepared for one policy family and how its gripper output is read.

    `image_size` None keeps the size the model asks for (`prepare_image(size=...)`) or the env's.
    `history` counts the frames per camera in the prompt (current included); `history_step` says
    where the earlier frames come from: 'env_step' (consecutive env steps, as in training data)
    or 'policy_call' (the frame of the previous policy call); `first_history` what an episode's
    first calls get where fewer frames exist: 'current_only' (the frames there are) or
    'repeat_current' (padded with the current frame). `gripper` is one of
    `GRIPPER_TRANSFORMS`; `binarize_gripper` maps the result to its sign.
    """

    name: str
    description: str
    cameras: tuple[str, ...] | None = None
    image_size: int | None = None
    center_crop_scale: float | None = None
    history: int = 1
    history_step: str = "env_step"
    first_history: str = "current_only"
    gripper: str = GRIPPER_AS_DECODED
    binarize_gripper: bool = False
    uses_state: bool = False

    def __post_init__(self) -> None:
        if self.gripper not in GRIPPER_TRANSFORMS:
            raise ValueError(f"gripper must be one of {GRIPPER_TRANSFORMS}, got {self.gripper!r}")
        if self.center_crop_scale is not None and not 0.0 < self.center_crop_scale <= 1.0:
            raise ValueError(f"center_crop_scale must be in (0, 1], got {self.center_crop_scale}")
        if self.history < 1:
            raise ValueError(f"history must be >= 1, got {self.history}")
        if self.history_step not in ("env_step", "policy_call"):
            raise ValueError(f"history_step must be 'env_step' or 'policy_call', "
                             f"got {self.history_step!r}")
        if self.first_history not in FIRST_HISTORY:
            raise ValueError(f"first_history must be one of {FIRST_HISTORY}, "
                             f"got {self.first_history!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Observation profiles by name; other packages add theirs with `register_profile`.
PROFILES: Registry[ObservationProfile] = Registry(
    "observation profile", check=lambda obj: isinstance(obj, ObservationProfile))


def register_profile(profile: ObservationProfile, overwrite: bool = False) -> ObservationProfile:
    """Add a profile to the registry (for other policy families); returns it."""
    PROFILES.register(profile.name, profile, help=profile.description, overwrite=overwrite)
    return profile


def get_profile(name: str | ObservationProfile) -> ObservationProfile:
    """A registered profile by name (a profile object is returned as is)."""
    if isinstance(name, ObservationProfile):
        return name
    return PROFILES.load(name)


def profile_names() -> list[str]:
    return PROFILES.names()


register_profile(ObservationProfile(
    name="libero",
    description="the env observation as is: every camera, env image size, gripper as emitted",
))
# WorldVLA's eval: worldvla/libero_util/Chameleon_utils.py, get_action_Chameleon_dis_awm_ck
# (the prompt's images: the previous env step's frame, none at the first query, then the current).
register_profile(ObservationProfile(
    name="worldvla",
    description="WorldVLA LIBERO eval: agentview only, resized to the model image size, previous "
                "env step's frame (none at the first call) + current frame, gripper as decoded",
    cameras=("agentview",),
    history=2,
    history_step="env_step",
    first_history="current_only",
    gripper=GRIPPER_AS_DECODED,
))
register_profile(ObservationProfile(
    name="worldvla_policy_call",
    description="as worldvla, the earlier frame from the previous policy call (an ablation)",
    cameras=("agentview",),
    history=2,
    history_step="policy_call",
    first_history="current_only",
    gripper=GRIPPER_AS_DECODED,
))
register_profile(ObservationProfile(
    name="openvla",
    description="OpenVLA run_libero_eval: agentview resized to 224, 90% centre crop, gripper "
                "[0,1] -> [-1,1], binarised, sign inverted",
    cameras=("agentview",),
    image_size=224,
    center_crop_scale=0.9,
    gripper=GRIPPER_OPENVLA,
    binarize_gripper=True,
))


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) or (B, H, W, 3) -> uint8 (..., size, size, 3); bilinear, antialiased.

    The one resize every profile (and WorldVLA training) uses, so train and eval frames go
    through the same arithmetic. Images already at `size` are returned unchanged.
    """
    import torch
    import torch.nn.functional as F

    array = np.asarray(image)
    single = array.ndim == 3
    batch = array[None] if single else array
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (B, H, W, 3) images, got {array.shape}")
    if batch.shape[1:3] == (size, size):
        out = np.ascontiguousarray(batch, dtype=np.uint8)
    else:
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
        out = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out[0] if single else out


def center_crop(image: np.ndarray, scale: float) -> np.ndarray:
    """Centre crop keeping `scale` of the area (side * sqrt(scale)), as OpenVLA's eval does."""
    h, w = image.shape[-3], image.shape[-2]
    ch, cw = max(1, round(h * math.sqrt(scale))), max(1, round(w * math.sqrt(scale)))
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[..., top : top + ch, left : left + cw, :]


def prepare_image(image: np.ndarray, profile: str | ObservationProfile,
                  size: int | None = None) -> np.ndarray:
    """An upright env frame prepared as the profile's model expects it (uint8, square).

    `size` is the model's input size; the profile's own `image_size`, when set, wins over it.
    """
    profile = get_profile(profile)
    out = np.asarray(image, dtype=np.uint8)
    target = profile.image_size or size
    if profile.center_crop_scale is not None:
        out = center_crop(out, profile.center_crop_scale)
        target = target or out.shape[-2]
    if target is not None:
        out = resize_image(out, int(target))
    return out


def normalize_gripper(values: np.ndarray, binarize: bool = False) -> np.ndarray:
    """[0, 1] -> [-1, 1] (OpenVLA's `normalize_gripper_action`); `binarize` takes the sign."""
    out = 2.0 * np.asarray(values, dtype=np.float64) - 1.0
    return np.sign(out) if binarize else out


def invert_gripper(values: np.ndarray) -> np.ndarray:
    """Flip the gripper sign (OpenVLA's `invert_gripper_action`: 0 = close, 1 = open data)."""
    return -np.asarray(values, dtype=np.float64)


def gripper_to_env(actions: np.ndarray, profile: str | ObservationProfile) -> np.ndarray:
    """A copy of actions (..., 7) with the gripper (last entry) mapped to the env convention."""
    profile = get_profile(profile)
    out = np.array(actions, dtype=np.float64, copy=True)
    if profile.gripper == GRIPPER_OPENVLA:
        out[..., -1] = invert_gripper(normalize_gripper(out[..., -1], profile.binarize_gripper))
    elif profile.binarize_gripper:
        out[..., -1] = np.sign(out[..., -1])
    return out

"""Gymnasium environments over LIBERO. Importing this module registers `worldvla_bench/LIBERO-v0`.

    import gymnasium, worldvla_bench.envs
    env = gymnasium.make("worldvla_bench/LIBERO-v0", suite="libero_spatial", task_id=0)
"""

import gymnasium

from worldvla_bench.envs.libero_env import LiberoEnv
from worldvla_bench.envs.rendering import configure_gl

ENV_ID = "worldvla_bench/LIBERO-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="worldvla_bench.envs.libero_env:LiberoEnv")

__all__ = ["ENV_ID", "LiberoEnv", "configure_gl"]

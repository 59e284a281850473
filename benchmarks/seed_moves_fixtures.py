"""The env seed moves fixtures the simulator state does not hold.

Share of agentview values that differ between env.seed(0) and env.seed(12345) in trial 0 of
OpenVLA's loop on the raw env (init state 0, 10 wait steps, 30 zero-motion steps, 256 px), and
the largest difference of the final simulator states.
Run: `python benchmarks/seed_moves_fixtures.py`.
"""

import numpy as np

from worldvla_bench.envs.reference_loop import run_reference_task
from worldvla_bench.tasks import load_suite

zeros = [np.array([[0, 0, 0, 0, 0, 0, -1]] * 30, float)]
for suite, task in [("libero_spatial", 0), ("libero_goal", 3), ("libero_10", 9)]:
    a, b = (run_reference_task(load_suite(suite), task, seed, zeros, 256, 30)[0]
            for seed in (0, 12345))
    frames = a.frames["agentview"][-1] != b.frames["agentview"][-1]
    print(suite, task, f"differing agentview values {frames.mean():.1%}",
          f"state max abs diff {np.abs(a.final_state - b.final_state).max():g}")

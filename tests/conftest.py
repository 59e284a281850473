"""Shared fixtures. Real LIBERO rollouts here stay short (few steps, 64 px images)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
# spawned worker processes import test policies (tests/policies_for_tests.py) by module path
_extra = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(REPO), *_extra])
sys.path.insert(0, str(TESTS_DIR))

SMALL = {"image_size": 64, "max_steps": 12}


def split_config(**kwargs):
    """(Protocol, RunOptions) from their fields given together, for short test calls:
    `run_evaluation(*split_config(suite=..., policy=..., run_dir=..., workers=2))`."""
    from dataclasses import fields

    from worldvla_bench.protocol import Protocol, RunOptions

    names = {f.name for f in fields(Protocol)}
    return (Protocol(**{k: v for k, v in kwargs.items() if k in names}),
            RunOptions(**{k: v for k, v in kwargs.items() if k not in names}))


def write_fake_run(run_dir: Path, outcomes: list[bool], suite: str = "libero_spatial",
                   max_steps: int = 220, first_seed: int = 0) -> Path:
    """A run directory of `worldvla` episodes of task 0, trial i succeeding as `outcomes[i]`
    (init state i, seed `first_seed` + i); no manifest."""
    from worldvla_bench.records import EpisodeRecord, append_episode

    run_dir.mkdir(parents=True)
    for trial, success in enumerate(outcomes):
        append_episode(run_dir, EpisodeRecord(
            suite=suite, task_id=0, task_name="t0", instruction="x", trial=trial,
            init_state=trial, seed=first_seed + trial, policy="worldvla", success=success,
            steps=10, max_steps=max_steps, wall_time_s=1.0, policy_time_s=0.5, env_time_s=0.5,
            reset_time_s=0.1, policy_calls=2, actions_at_bound_frac=0.0))
    return run_dir


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a test module (exact, repeatable CPU sums), restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory) -> Path:
    """A real run: libero_spatial tasks 0 and 1, 2 trials each, 2 workers, random policy, videos."""
    from worldvla_bench.rollout import run_evaluation

    run_dir = tmp_path_factory.mktemp("runs") / "random_small"
    run_evaluation(
        *split_config(
            suite="libero_spatial",
            policy="random",
            tasks="0,1",
            trials=2,
            run_dir=run_dir,
            workers=2,
            video=True,
            progress=False,
            **SMALL,
        )
    )
    return run_dir


def batch_equals_one_at_a_time(policy, texts: list[str], size: int, n: int = 8) -> set[str]:
    """`n` observations of the `worldvla` profile (random `size` px frames, the instructions
    in turn, some with a previous frame, some without, as at an episode's first call) through
    `policy.act_batch` at once and `policy.act` one by one: asserts both give every entry the
    same chunk or the same `EndEpisode` (reason, actions); returns the kinds met."""
    import numpy as np

    from worldvla_bench.policy import EndEpisode

    rng = np.random.default_rng(11)
    observations = []
    for i in range(n):
        obs = {"agentview_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
               "instruction": texts[i % len(texts)]}
        if i % 3:
            obs["agentview_history"] = rng.integers(0, 255, (1, size, size, 3), dtype=np.uint8)
        observations.append(obs)
    batch = policy.act_batch(observations, contexts=[None] * n)
    kinds = set()
    for obs, out in zip(observations, batch, strict=True):
        try:
            alone = policy.act(obs)
        except EndEpisode as end:
            alone = end
        assert type(out) is type(alone)
        if isinstance(out, EndEpisode):
            assert out.reason == alone.reason
            np.testing.assert_array_equal(out.actions, alone.actions)
            kinds.add("end")
        else:
            np.testing.assert_array_equal(out, alone)
            kinds.add("chunk")
    return kinds


def program_branches(head, embed, ids: tuple[int, int, int], first_value: int,
                     seed: int) -> None:
    """Turn a random language model (LM head `head`, embeddings `embed`, both (V, D)) into one
    whose first answer token depends on the prompt (its attention stays random; the LM head
    picks one of four openings) and whose next tokens follow a bigram chain (the chain tokens'
    embeddings, one-hot x 1000, drown the attention): a well-formed block, a value with no
    block, or values then an end before any begin. `ids` = (begin, end of action, end of
    turn); value ids from `first_value` (bin 0)."""
    import torch

    boa, eoa, eot = ids
    good = [first_value + b for b in (3, 50, 90, 127, 160, 200, 250)]
    lone, stray = first_value + 94, [first_value + b for b in (95, 96, 97)]
    chains = [[boa, *good, eoa, eot], [lone, eot], [*stray, eoa, eot]]
    openings = [boa, lone, eoa, stray[0]]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.zero_()
        successors = {s: d for chain in chains for s, d in zip(chain[:-1], chain[1:], strict=True)}
        for k, (src, dst) in enumerate(successors.items()):
            embed[src] = 0.0
            embed[src, k] = 1000.0
            head[dst, k] = 10.0
        head[openings, 16:] = 6 * torch.randn(len(openings), head.shape[1] - 16,
                                              generator=generator)

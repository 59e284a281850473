"""The Ray backend on a private single-node Ray bound to 127.0.0.1 (2 CPUs, no dashboard).

A run through Ray equals the local run (records modulo timings and pids, actions, final states,
videos); a Ray worker killed mid-episode costs a retry, not a lost or duplicated record.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, split_config

from worldvla_bench.manifest import read_manifest
from worldvla_bench.policies.random import RandomPolicy
from worldvla_bench.policy import EpisodeContext
from worldvla_bench.records import load_episode_arrays, read_episodes
from worldvla_bench.render_provenance import same_renderer
from worldvla_bench.rollout import run_evaluation

ray = pytest.importorskip("ray")

VOLATILE = {"wall_time_s", "policy_time_s", "env_time_s", "reset_time_s", "env_build_s",
            "worker_pid", "finished_at", "retries", "worker_exits", "slowest_call_s"}


class DiesOncePolicy(RandomPolicy):
    """`random`, except that the first process to start trial 1 dies on the spot."""

    def __init__(self, marker: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.marker = marker

    def reset(self, context: EpisodeContext) -> None:
        if context.trial == 1 and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)  # the worker process is gone, mid-episode
        super().reset(context)


COMMON = dict(suite="libero_spatial", tasks="0", trials=2, workers=2, video=True, progress=False,
              **SMALL)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The reference: the same episodes on the local backend."""
    run_dir = tmp_path_factory.mktemp("ray_reference") / "local"
    run_evaluation(*split_config(policy="random", run_dir=run_dir, **COMMON))
    return run_dir


def _by_key(run_dir: Path) -> dict:
    return {(r["task_id"], r["trial"]): r for r in read_episodes(run_dir)}


def _assert_same_episodes(local_dir: Path, ray_dir: Path, ignore=frozenset()) -> None:
    local, remote = _by_key(local_dir), _by_key(ray_dir)
    assert sorted(local) == sorted(remote) == [(0, 0), (0, 1)]
    for key, a in local.items():
        b = remote[key]
        skip = VOLATILE | ignore
        assert {k: v for k, v in a.items() if k not in skip} == {
            k: v for k, v in b.items() if k not in skip}
        x, y = load_episode_arrays(local_dir / a["episode_file"]), load_episode_arrays(
            ray_dir / b["episode_file"])
        np.testing.assert_array_equal(x["actions"], y["actions"])
        np.testing.assert_array_equal(x["final_state"], y["final_state"])
        assert (ray_dir / b["video"]).stat().st_size > 0  # shipped back from the actor


def test_a_ray_run_equals_the_local_run(local_ray, local_run: Path, tmp_path: Path):
    ray_dir = tmp_path / "ray"
    config = split_config(policy="random", run_dir=ray_dir, backend="ray", **COMMON)
    run_evaluation(*config)
    _assert_same_episodes(local_run, ray_dir)
    # the actors' render provenance reaches the driver's manifest, as the local workers' does
    remote, local = read_manifest(ray_dir), read_manifest(local_run)
    assert remote["render"]["gl_renderer"] and same_renderer(remote["render"], local["render"])
    # resume: a rerun through Ray runs nothing
    before = (ray_dir / "episodes.jsonl").read_text()
    run_evaluation(*config)
    assert (ray_dir / "episodes.jsonl").read_text() == before


def test_a_lost_ray_worker_is_retried_not_lost_or_duplicated(local_ray, local_run: Path,
                                                             tmp_path: Path):
    marker = tmp_path / "died"
    run_dir = tmp_path / "dies"
    run_evaluation(*split_config(policy="test_ray_backend:DiesOncePolicy", backend="ray",
                             policy_kwargs={"marker": str(marker)}, run_dir=run_dir, **COMMON))
    assert marker.exists(), "a worker must have died"
    records = read_episodes(run_dir)
    assert sorted((r["task_id"], r["trial"]) for r in records) == [(0, 0), (0, 1)]
    assert all(r["error"] is None for r in records)
    retried = next(r for r in records if r["trial"] == 1)
    assert retried["worker_pid"] != int(marker.read_text())
    # every episode, the retried one included, is the episode the local engine ran
    _assert_same_episodes(local_run, run_dir, ignore=frozenset({"policy"}))

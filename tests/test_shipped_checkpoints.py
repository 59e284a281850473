"""Shipped tiny WorldVLA checkpoints: the float16 export and the files in the package.

The export is checked on a freshly trained tiny model (synthetic demos); the shipped files
(`make tiny-checkpoints`) are checked to be small, to load by name, and to drive the policy and
the world model on a real LIBERO frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.checkpoints import file_sha256
from worldvla_bench.integrations.worldvla.shipped import (
    DEFAULT_CHECKPOINT,
    MAX_SHIPPED_BYTES,
    SHIPPED,
    export_checkpoint,
    shipped_path,
)
from worldvla_bench.integrations.worldvla.training import (
    TrainConfig,
    load_checkpoint,
    make_synthetic_demos,
    train,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ship")
    make_synthetic_demos(root / "demos" / "put_the_red_block_on_the_plate_demo.hdf5", n_demos=2,
                         length=12, instruction="put the red block on the plate")
    config = TrainConfig(data=[str(root / "demos")], out=str(root / "run"), vq_steps=4, steps=6,
                         world_model_weight=1.0, chunk_size=3, checkpoint_every=6, seed=1,
                         batch_size=4, vq_batch_size=8, progress=False, threads=1)
    return train(config).checkpoint


def test_export_halves_the_weights_and_keeps_what_evaluation_reads(trained, tmp_path):
    source_model, source_meta = load_checkpoint(trained)
    target = export_checkpoint(trained.parent / "last.pt", tmp_path / "small.pt")
    raw = torch.load(target, weights_only=True)
    assert "optimizer" not in raw and "rng" not in raw and "losses" not in raw
    floats = [t for t in raw["state_dict"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    assert raw["exported"]["step"] == source_meta["step"] and raw["exported"]["half"] is True
    model, meta = load_checkpoint(target)
    for key in ("chunk_size", "action_mask", "world_model_weight", "instructions", "step"):
        assert meta[key] == source_meta[key], key
    for (name, exported), original in zip(model.state_dict().items(),
                                          source_model.state_dict().values(), strict=True):
        assert exported.dtype == original.dtype, name  # widened back to the model's dtype
        if original.is_floating_point():
            expected = original.half().to(original.dtype)
            assert torch.equal(exported, expected), name
        else:
            assert torch.equal(exported, original), name
    assert target.stat().st_size < (trained.parent / "last.pt").stat().st_size / 2


def test_unknown_checkpoint_names_the_shipped_ones(tmp_path):
    with pytest.raises(BenchError, match="tiny-libero-goal"):
        load_checkpoint(tmp_path / "nope.pt")


def test_shipped_checkpoints_are_small_and_load_by_name():
    assert DEFAULT_CHECKPOINT in SHIPPED
    for name in SHIPPED:
        path = shipped_path(name)
        assert path is not None and path.exists(), f"{name}: run `make tiny-checkpoints`"
        assert path.stat().st_size < MAX_SHIPPED_BYTES, name
        model, meta = load_checkpoint(name)
        assert meta["exported"]["half"] and meta["world_model_weight"] > 0, name
        assert model.config.name == "tiny"


def test_shipped_default_drives_policy_and_world_model_on_a_real_frame():
    from worldvla_bench.envs.libero_env import LiberoEnv
    from worldvla_bench.integrations.worldvla.policy import WorldVLAPolicy
    from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel
    from worldvla_bench.policy import EpisodeContext, validate_chunk

    policy = WorldVLAPolicy()  # the shipped default, no argument
    model = WorldVLAWorldModel()
    env = LiberoEnv("libero_goal", 1, image_size=64, cameras=("agentview",), max_steps=8)
    try:
        obs, _ = env.reset(seed=0, options={"init_state": 0})
        policy.reset(EpisodeContext("libero_goal", 1, env.task.name, env.instruction, 0, 0, 8))
        chunk = validate_chunk(policy.act(obs))
        assert len(chunk) == policy.chunk_size and np.all(np.abs(chunk) <= 1.0)
        frames = model.predict(obs["agentview_image"][None], chunk, env.instruction)
        assert frames.shape == (len(chunk), 64, 64, 3) and frames.dtype == np.uint8
    finally:
        env.close()


def test_world_model_batches_clips_as_it_predicts_them_one_by_one(trained):
    """predict_many runs clips of different lengths in lockstep batches; each clip gets the
    frames `predict` gives it alone (greedy decoding, same prompts)."""
    from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel

    model = WorldVLAWorldModel(str(trained), batch_size=2)
    rng = np.random.default_rng(0)
    items = [(rng.integers(0, 255, (1, size, size, 3), dtype=np.uint8),
              rng.uniform(-1, 1, (n, 7)), "", None)
             for size, n in ((64, 3), (128, 1), (64, 0), (64, 2))]
    together = model.predict_many(items)
    for item, frames in zip(items, together, strict=True):
        alone = model.predict(*item)
        assert frames.shape == alone.shape == (len(item[1]), *item[0].shape[1:])
        np.testing.assert_array_equal(frames, alone)


def test_a_run_resumed_after_its_checkpoint_file_changed_stops(tmp_path, capsys):
    """`eval --policy worldvla` records the checkpoint's sha256 with every episode: resuming the
    run after the file at the same path changed (a new shipped default under the same name)
    stops in one line and adds no episode; the original file back, the run resumes."""
    import json
    import shutil

    from worldvla_bench.cli import main
    from worldvla_bench.records import read_episodes

    checkpoint = tmp_path / "model.pt"
    shutil.copy(shipped_path("tiny-libero-goal-early"), checkpoint)
    run = tmp_path / "run"

    def evaluate(trials: int) -> int:
        return main(["eval", "--suite", "libero_goal", "--policy", "worldvla", "--policy-arg",
                     f"checkpoint={checkpoint}", "--tasks", "1", "--trials", str(trials),
                     "--image-size", "64", "--max-steps", "10", "--workers", "1", "--run",
                     str(run), "--no-progress", "--no-report"])

    assert evaluate(1) == 0
    served = json.loads((run / "manifest.json").read_text())["served_model"]
    assert served["sha256"] == file_sha256(checkpoint) and served["file"] == "model.pt"
    shutil.copy(shipped_path(DEFAULT_CHECKPOINT), checkpoint)  # same name, other model
    capsys.readouterr()
    assert evaluate(2) == 2
    err = capsys.readouterr().err.strip()
    assert "holds episodes of" in err and served["sha256"] in err and len(err.splitlines()) == 1
    assert len(read_episodes(run)) == 1
    shutil.copy(shipped_path("tiny-libero-goal-early"), checkpoint)
    assert evaluate(2) == 0
    records = read_episodes(run)
    assert len(records) == 2 and all(r["served_model"] == served for r in records)

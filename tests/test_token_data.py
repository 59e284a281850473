"""Token files (`integrations/worldvla/token_data.py`): demos as VQ codes round-trip, and a
training on them equals the training on the demos they were made from (same losses, same
weights), with and without world-only episodes; files that do not match are refused. Tiny
models, synthetic LIBERO-layout HDF5, 1 torch thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.checkpoints import load_vq, save_vq_only
from worldvla_bench.integrations.worldvla.token_data import (
    encode_frames,
    load_tokens,
    make_tokens,
    read_token_meta,
    save_tokens,
)
from worldvla_bench.integrations.worldvla.training import (
    TrainConfig,
    load_demos,
    make_synthetic_demos,
    read_checkpoint,
    train,
)

torch.set_num_threads(1)
FAST = {"batch_size": 4, "vq_batch_size": 8, "progress": False, "threads": 1}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Demos, world-only episodes (another task, other lengths), a trained VQ-VAE saved alone,
    and the token file it encoded."""
    root = tmp_path_factory.mktemp("tokens")
    demos, noisy = root / "demos", root / "noisy"
    make_synthetic_demos(demos / "put_the_red_block_on_the_plate_demo.hdf5", n_demos=2,
                         length=9, instruction="put the red block on the plate")
    make_synthetic_demos(noisy / "open_the_drawer_demo.hdf5", n_demos=3, length=7,
                         instruction="open the drawer", seed=5)
    vq_run = train(TrainConfig(data=[str(demos)], world_data=[str(noisy)], world_model_weight=1,
                               out=str(root / "vq"), steps=0, vq_steps=6, seed=3, **FAST))
    vq = save_vq_only(vq_run.checkpoint, root / "vq.pt")
    tokens = make_tokens(root / "tokens.npz", vq, [str(demos)], [str(noisy)])
    return {"root": root, "demos": demos, "noisy": noisy, "vq": vq, "tokens": tokens,
            "vq_run": vq_run.checkpoint}


def test_a_token_file_holds_the_demos_and_the_codes_the_vq_gives_them(grid):
    full = load_demos([grid["demos"]], 64)
    full.add_world_only(load_demos([grid["noisy"]], 64))
    expected = encode_frames(load_vq(grid["vq_run"]), full)  # the VQ before it was saved alone
    demos, codes = load_tokens(grid["tokens"], vq_checkpoint=grid["vq"])
    assert len(demos) == len(full) == 5 and demos.frames == []
    assert [c.shape for c in codes] == [c.shape for c in expected]
    assert all(np.array_equal(a, b) for a, b in zip(codes, expected, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(demos.actions, full.actions, strict=True))
    assert demos.texts == full.texts and demos.languages == full.languages
    assert demos.files == full.files and demos.world_files == full.world_files
    assert [demos.is_world_only(e) for e in range(5)] == [False, False, True, True, True]
    # without the world-only episodes: the demos alone, as a cell without a world model reads
    alone, alone_codes = load_tokens(grid["tokens"], world_only=False)
    assert len(alone) == 2 and alone.world_only == [] and alone.world_files == []
    assert all(np.array_equal(a, b) for a, b in zip(alone_codes, expected[:2], strict=True))
    meta = read_token_meta(grid["tokens"])
    assert meta["recipe"] == {"view": "agentview", "instruction_source": "language",
                              "max_demos": None, "action_labels": "executed"}


def test_labels_round_trip_apart_from_the_actions(tmp_path):
    demos, codes = load_tokens(_tokens_with_labels(tmp_path))
    assert demos.intended_labels == 1
    assert np.array_equal(demos.labels[0], demos.actions[0] + 1)
    assert np.array_equal(codes[0], np.arange(4 * 64).reshape(4, 8, 8) % 512)


def _tokens_with_labels(tmp_path: Path) -> Path:
    from worldvla_bench.integrations.worldvla.demo_data import DemoSet

    actions = np.linspace(-1, 1, 21).reshape(3, 7)
    demos = DemoSet([], [actions], ["t"], ["t"], files=["f.hdf5"], labels=[actions + 1],
                    intended_labels=1)
    vq = tmp_path / "vq.bin"
    vq.write_bytes(b"any file")
    return save_tokens(tmp_path / "t.npz", demos, [np.arange(4 * 64).reshape(4, 8, 8) % 512], vq)


@pytest.mark.parametrize("world", [True, False])
def test_training_on_tokens_equals_training_on_their_demos(grid, tmp_path, world):
    """Same seed, same VQ-VAE: the token file gives the same losses and weights as the demos
    (world-only episodes in the world-model run, left out of the action-only one)."""
    common = dict(vq_from=str(grid["vq"]), steps=3, chunk_size=2, image_loss_weight=1.0,
                  world_model_weight=1.0 if world else 0.0, seed=7, **FAST)
    on_demos = train(TrainConfig(data=[str(grid["demos"])], out=str(tmp_path / "demos"),
                                 world_data=[str(grid["noisy"])] if world else [], **common))
    on_tokens = train(TrainConfig(data=[], tokens=str(grid["tokens"]),
                                  out=str(tmp_path / "tokens"), **common))
    losses = [(r["loss"], r["action_loss"]) for r in on_demos.losses]
    assert losses == [(r["loss"], r["action_loss"]) for r in on_tokens.losses]
    a, b = read_checkpoint(on_demos.checkpoint), read_checkpoint(on_tokens.checkpoint)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["data"] == b["data"]
    assert b["data"]["world_episodes"] == (3 if world else 0)


def test_a_token_file_is_refused_with_another_or_damaged_vq_or_other_reading_args(grid, tmp_path):
    other = save_vq_only(train(TrainConfig(data=[str(grid["demos"])], out=str(tmp_path / "vq"),
                                           steps=0, vq_steps=2, seed=9, **FAST)).checkpoint,
                         tmp_path / "other_vq.pt")
    common = dict(data=[], tokens=str(grid["tokens"]), steps=1, chunk_size=2, **FAST)
    with pytest.raises(BenchError, match="another VQ-VAE"):
        train(TrainConfig(out=str(tmp_path / "a"), vq_from=str(other), **common))
    damaged = tmp_path / "damaged_vq.pt"
    damaged.write_bytes(Path(grid["vq"]).read_bytes()[:1000])
    with pytest.raises(BenchError, match="cannot read checkpoint .*damaged_vq.pt"):
        train(TrainConfig(out=str(tmp_path / "a"), vq_from=str(damaged), **common))
    with pytest.raises(BenchError, match="instruction_source"):
        train(TrainConfig(out=str(tmp_path / "b"), vq_from=str(grid["vq"]),
                          instruction_source="filename", **common))
    with pytest.raises(BenchError, match="needs the VQ-VAE that encoded it"):
        TrainConfig(out="o", **common)
    with pytest.raises(BenchError, match="not both"):
        TrainConfig(out="o", **{**common, "data": [str(grid["demos"])]}, vq_from="v")
    with pytest.raises(BenchError, match="nothing to train on"):
        train(TrainConfig(data=[], out=str(tmp_path / "c"), **FAST))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not numpy")
    with pytest.raises(BenchError, match="not a token file"):
        read_token_meta(bad)

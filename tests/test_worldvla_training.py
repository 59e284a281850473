"""WorldVLA training, checkpoints, the `worldvla` policy, the world-model adapter, observation
profiles and the ablation table. Tiny models, a synthetic LIBERO-layout HDF5, 1 torch thread."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from worldvla_bench.errors import BenchError, RunDirectoryError
from worldvla_bench.integrations.worldvla.training import (
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    TrainConfig,
    add_train_parser,
    instruction_from_filename,
    load_checkpoint,
    load_demos,
    make_synthetic_demos,
    train,
)
from worldvla_bench.run_lock import run_dir_lock

torch.set_num_threads(1)

INSTRUCTION = "put the red block on the plate"
FAST = {"batch_size": 4, "vq_batch_size": 8, "progress": False, "threads": 1}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demos")
    make_synthetic_demos(root / "put_the_red_block_on_the_plate_demo.hdf5", n_demos=2, length=12,
                         instruction=INSTRUCTION)
    return root


@pytest.fixture(scope="module")
def trained(demos, tmp_path_factory):
    """A tiny model: VQ-VAE then transformer with world-model samples and the action mask."""
    out = tmp_path_factory.mktemp("train") / "run"
    config = TrainConfig(data=[str(demos)], out=str(out), vq_steps=8, steps=24, lr=2e-3,
                         world_model_weight=1.0, chunk_size=3, checkpoint_every=12, seed=1,
                         **FAST)
    return config, train(config)


def test_synthetic_demos_follow_the_libero_layout(demos):
    import h5py

    path = next(demos.glob("*.hdf5"))
    with h5py.File(path, "r") as handle:
        demo = handle["data/demo_0"]
        assert demo["obs/agentview_rgb"].shape == (12, 64, 64, 3)
        assert demo["actions"].shape == (12, 7)
        assert json.loads(handle["data"].attrs["problem_info"])["language_instruction"] == \
            INSTRUCTION
    data = load_demos([demos], image_size=32)
    assert len(data) == 2 and data.frames[0].shape == (12, 32, 32, 3)
    assert data.actions[0].shape == (11, 7)  # the frame after the last action is not stored
    assert data.texts == [INSTRUCTION, INSTRUCTION]
    by_name = load_demos([path], 64, instruction_source="filename")
    assert by_name.texts[0] == INSTRUCTION  # file name with spaces, "_demo" dropped
    assert instruction_from_filename("LIVING_ROOM_SCENE2_put_both_x_demo.hdf5") == \
        "LIVING ROOM SCENE2 put both x"


def test_training_reduces_the_loss_and_writes_curves(trained):
    config, result = trained
    out = Path(config.out)
    vq = [r for r in result.losses if r["stage"] == "vq"]
    tf = [r for r in result.losses if r["stage"] == "transformer"]
    assert [r["step"] for r in vq] == list(range(1, 9))
    assert [r["step"] for r in tf] == list(range(1, 25))
    first, last = np.mean([r["loss"] for r in tf[:3]]), np.mean([r["loss"] for r in tf[-3:]])
    assert last < first - 0.5, (first, last)
    assert all(np.isfinite(r["action_loss"]) and np.isfinite(r["world_loss"]) for r in tf)
    assert result.checkpoint == out / FINAL_CHECKPOINT and (out / LAST_CHECKPOINT).exists()
    with (out / "losses.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 8 + 24 and rows[-1]["stage"] == "transformer"
    assert (out / "losses.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_checkpoint_round_trip_carries_config_and_training_args(trained, tmp_path):
    config, result = trained
    model, meta = load_checkpoint(result.checkpoint)
    assert meta["stage"] == "done" and meta["step"] == 24 and meta["chunk_size"] == 3
    assert meta["action_mask"] is True and meta["world_model_weight"] == 1.0
    assert meta["instruction_source"] == "language"
    assert meta["instructions"] == {INSTRUCTION: INSTRUCTION}
    assert meta["train_args"]["data"] == config.data
    again, _ = load_checkpoint(Path(config.out))  # a directory resolves to final.pt
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    # the same weights give the same predictions after a save/load through WorldVLA.save too
    model.save(tmp_path / "plain.pt")
    plain, plain_meta = load_checkpoint(tmp_path / "plain.pt")
    frames = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    assert torch.equal(model.encode_images(frames), plain.encode_images(frames))
    assert plain_meta["chunk_size"] == 5  # defaults for files without training metadata


def test_resume_reproduces_the_uninterrupted_run(trained, demos, tmp_path):
    _, result = trained
    common = dict(data=[str(demos)], vq_from=str(result.checkpoint), steps=6, lr=2e-3,
                  world_model_weight=1.0, chunk_size=3, checkpoint_every=100, seed=3, **FAST)
    straight = train(TrainConfig(out=str(tmp_path / "a"), snapshot_every=2, **common))
    stopped = train(TrainConfig(out=str(tmp_path / "b"), stop_at=3, **common))
    assert stopped.stopped_early and load_checkpoint(tmp_path / "b")[1]["step"] == 3
    assert not (tmp_path / "b" / FINAL_CHECKPOINT).exists()
    # a second training of the same directory stops at once, writing nothing
    before = (tmp_path / "b" / LAST_CHECKPOINT).read_bytes()
    with run_dir_lock(tmp_path / "b"), pytest.raises(
            RunDirectoryError, match="training directory .* in use by another training"):
        train(TrainConfig(out=str(tmp_path / "b"), **common))
    assert (tmp_path / "b" / LAST_CHECKPOINT).read_bytes() == before
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **common))
    tail = [r for r in resumed.losses if r["stage"] == "transformer"]
    assert [r["step"] for r in tail] == [1, 2, 3, 4, 5, 6]
    expected = [r["loss"] for r in straight.losses if r["stage"] == "transformer"]
    assert [r["loss"] for r in tail] == expected  # bitwise: optimizer, step and RNG restored
    a, _ = load_checkpoint(tmp_path / "a")
    b, _ = load_checkpoint(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))
    with pytest.raises(BenchError, match="other arguments"):
        train(TrainConfig(out=str(tmp_path / "b"), **{**common, "chunk_size": 2}))
    # snapshots: float16 evaluation copies at steps 2, 4, 6; the last one is final.pt halved
    snapshots = sorted(p.name for p in (tmp_path / "a" / "snapshots").iterdir())
    assert snapshots == ["step_00002.pt", "step_00004.pt", "step_00006.pt"]
    early, early_meta = load_checkpoint(tmp_path / "a" / "snapshots" / "step_00002.pt")
    assert early_meta["exported"]["step"] == 2 and early_meta["exported"]["half"]
    assert not all(torch.equal(x, y) for x, y in zip(early.state_dict().values(),
                                                      a.state_dict().values(), strict=True))
    last, _ = load_checkpoint(tmp_path / "a" / "snapshots" / "step_00006.pt")
    for name, value in a.state_dict().items():
        expected = value.half().to(value.dtype) if value.is_floating_point() else value
        assert torch.equal(last.state_dict()[name], expected), name


def test_train_cli_parser_maps_flags(demos, tmp_path):
    parser = argparse.ArgumentParser(prog="worldvla-bench")
    add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--data", str(demos), "--out", str(tmp_path / "x"),
                              "--config", "tiny", "--chunk-size", "4",
                              "--world-model-weight", "0.5", "--action-mask", "off",
                              "--steps", "0", "--vq-steps", "2", "--batch-size", "2",
                              "--vq-batch-size", "2", "--no-progress"])
    from worldvla_bench.integrations.worldvla.training import config_from_args

    config = config_from_args(args)
    assert (config.chunk_size, config.world_model_weight, config.action_mask) == (4, 0.5, False)
    assert (config.world_data, config.image_loss_weight) == ([], 0.04)  # the defaults
    flagged = config_from_args(parser.parse_args(
        ["train", "--data", "d", "--out", "o", "--world-model-weight", "1", "--world-data", "n1",
         "n2", "--image-loss-weight", "1", "--snapshot-every", "500"]))
    assert (flagged.world_data, flagged.image_loss_weight) == (["n1", "n2"], 1.0)
    assert (config.snapshot_every, flagged.snapshot_every) == (None, 500)
    assert config.action_labels == "executed"  # the default
    assert config_from_args(parser.parse_args(["train", "--data", "d", "--out", "o",
                                               "--action-labels", "intended"])
                            ).action_labels == "intended"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "d", "--out", "o", "--action-labels", "planned"])
    with pytest.raises(BenchError, match="snapshot interval must be >= 1"):
        TrainConfig(data=["d"], out="o", snapshot_every=0)
    assert args.func(args) == 0  # VQ-VAE only (--steps 0)
    assert load_checkpoint(tmp_path / "x")[1]["vq_step"] == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "d", "--out", "o", "--action-mask", "maybe"])


def test_world_data_episodes_feed_world_samples_only(demos, tmp_path):
    from worldvla_bench.integrations.worldvla.model import WorldVLA
    from worldvla_bench.integrations.worldvla.training import SampleBuilder, read_checkpoint

    world_dir = tmp_path / "noisy"
    make_synthetic_demos(world_dir / "open_the_drawer_demo.hdf5", n_demos=3, length=10,
                         instruction="open the drawer", seed=5)
    data = load_demos([demos], 64)
    data.add_world_only(load_demos([world_dir], 64))
    assert len(data) == 5 and data.action_episodes() == 2
    assert data.instructions() == {INSTRUCTION: INSTRUCTION}
    model = WorldVLA.from_preset("tiny")
    grid = model.config.vq.grid
    # every frame of episode e has all codes equal to e: a sample's image tokens name its episode
    codes = [np.full((len(f), grid, grid), e, np.int64) for e, f in enumerate(data.frames)]
    builder = SampleBuilder(model, data, codes, chunk_size=3)
    assert set(builder.action_index[:, 0].tolist()) == {0, 1}
    assert set(builder.world_index[:, 0].tolist()) == {0, 1, 2, 3, 4}
    assert len(builder.world_index) == sum(len(a) for a in data.actions)
    samples, n_action = builder.batch(np.random.default_rng(0), 200, 1.0)
    offset = model.vocab.image_offset

    def episodes(sample) -> set[int]:
        return {t - offset for t in sample.input_ids if offset <= t < offset + 5}

    assert set().union(*map(episodes, samples[:n_action])) == {0, 1}
    assert set().union(*map(episodes, samples[n_action:])) == {0, 1, 2, 3, 4}

    common = dict(data=[str(demos)], vq_steps=2, steps=2, world_model_weight=1.0, chunk_size=3,
                  checkpoint_every=1, **FAST)
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), world_data=[str(world_dir)], stop_at=1, **common))
    saved = read_checkpoint(out / LAST_CHECKPOINT)
    assert saved["data"] == {"files": [str(next(demos.glob("*.hdf5")))], "episodes": 2,
                             "intended_labels": 0,
                             "world_files": [str(world_dir / "open_the_drawer_demo.hdf5")],
                             "world_episodes": 3}
    assert saved["instructions"] == {INSTRUCTION: INSTRUCTION}
    assert saved["train_args"]["world_data"] == [str(world_dir)]
    for changed in ({"world_data": []}, {"world_data": [str(world_dir)], "image_loss_weight": 1.0}):
        with pytest.raises(BenchError, match="other arguments"):
            train(TrainConfig(out=str(out), **{**common, **changed}))
    result = train(TrainConfig(out=str(out), world_data=[str(world_dir)], **common))
    assert not result.stopped_early and load_checkpoint(out)[1]["step"] == 2
    with pytest.raises(BenchError, match="world-model weight > 0"):
        TrainConfig(data=[str(demos)], out=str(tmp_path / "x"), world_data=[str(world_dir)])


def test_intended_labels_feed_action_samples_and_executed_actions_world_samples(tmp_path):
    """`action_labels='intended'`: an action sample targets the actions the recording expert
    meant (a file's `intended_actions`; the executed ones where a demo has none), a world-model
    sample reads the executed ones, which made its frames."""
    import h5py

    from worldvla_bench.integrations.worldvla.model import WorldVLA
    from worldvla_bench.integrations.worldvla.training import SampleBuilder, read_checkpoint

    path = make_synthetic_demos(tmp_path / "dart" / "open_the_drawer_demo.hdf5", n_demos=2,
                                length=10, instruction=INSTRUCTION, seed=3)
    with h5py.File(path, "a") as handle:  # only demo_0 keeps the actions it meant
        meant = -handle["data/demo_0/actions"][()]
        handle["data/demo_0"].create_dataset("intended_actions", data=meant)
    executed = load_demos([path.parent], 64)
    data = load_demos([path.parent], 64, action_labels="intended")
    assert (executed.labels, executed.intended_labels, data.intended_labels) == ([], 0, 1)
    np.testing.assert_array_equal(data.label(0), meant[:9])  # the reader drops the last action
    np.testing.assert_array_equal(data.label(1), data.actions[1])
    for episode in range(2):
        np.testing.assert_array_equal(data.actions[episode], executed.actions[episode])
    model = WorldVLA.from_preset("tiny")
    grid = model.config.vq.grid
    codes = [np.full((len(f), grid, grid), e, np.int64) for e, f in enumerate(data.frames)]
    on_meant, on_executed = (SampleBuilder(model, d, codes, chunk_size=3) for d in (data, executed))
    expected = model.tokenizer.action_sample(INSTRUCTION, codes[0][1], codes[0][2], meant[2:5])
    assert on_meant.action_sample(0, 2) == expected != on_executed.action_sample(0, 2)
    assert on_meant.action_sample(1, 2) == on_executed.action_sample(1, 2)
    assert on_meant.world_sample(0, 2) == on_executed.world_sample(0, 2)

    common = dict(data=[str(path.parent)], vq_steps=2, steps=1, chunk_size=3, **FAST)
    result = train(TrainConfig(out=str(tmp_path / "run"), action_labels="intended", **common))
    saved = read_checkpoint(result.checkpoint)
    assert (result.action_episodes, result.intended_labels) == (2, 1)
    assert saved["train_args"]["action_labels"] == "intended"
    assert saved["data"]["intended_labels"] == 1
    with pytest.raises(BenchError, match="other arguments"):  # resuming under other labels
        train(TrainConfig(out=str(tmp_path / "run"), **{**common, "steps": 2}))
    make_synthetic_demos(tmp_path / "clean" / "open_the_drawer_demo.hdf5", n_demos=1, length=8)
    with pytest.raises(BenchError, match="keeps intended_actions"):
        train(TrainConfig(out=str(tmp_path / "x"), action_labels="intended",
                          **{**common, "data": [str(tmp_path / "clean")]}))
    with pytest.raises(BenchError, match="action labels must be one of"):
        TrainConfig(data=["d"], out="o", action_labels="planned")


def test_checkpoints_from_before_the_new_arguments_resume_with_their_defaults(demos, tmp_path):
    """A `last.pt` whose training arguments predate `world_data` and `image_loss_weight` was
    trained with no world data and WorldVLA's 0.04: it resumes under those, not others."""
    from worldvla_bench.integrations.worldvla.training import read_checkpoint, save_checkpoint

    common = dict(data=[str(demos)], vq_steps=2, steps=2, chunk_size=3, checkpoint_every=1,
                  **FAST)
    train(TrainConfig(out=str(tmp_path), stop_at=1, **common))
    saved = read_checkpoint(tmp_path / LAST_CHECKPOINT)
    for key in ("world_data", "image_loss_weight", "action_labels"):
        del saved["train_args"][key]
    save_checkpoint(tmp_path / LAST_CHECKPOINT, saved)
    with pytest.raises(BenchError, match="image_loss_weight: 0.04 -> 1.0"):
        train(TrainConfig(out=str(tmp_path), image_loss_weight=1.0, **common))
    assert load_checkpoint(train(TrainConfig(out=str(tmp_path), **common)).checkpoint)[1][
        "step"] == 2


@pytest.mark.parametrize("weight", [0.04, 1.0, 3.0])
def test_image_loss_weight_weighs_image_code_targets(demos, tmp_path, weight):
    """The first logged transformer loss, recomputed by hand from the model's per-token
    log-likelihoods: sum(w * nll) / sum(w) with w = `image_loss_weight` on image-code targets
    and 1 on every other answer token. With lr 0 the saved weights are the ones that loss was
    computed with, and with no VQ step the batch is the first draw of the seeded RNG."""
    from worldvla_bench.integrations.worldvla.generation import forward_sequence
    from worldvla_bench.integrations.worldvla.sequence import collate
    from worldvla_bench.integrations.worldvla.training import SampleBuilder

    result = train(TrainConfig(data=[str(demos)], out=str(tmp_path), vq_steps=0, steps=1,
                               lr=0.0, world_model_weight=1.0, chunk_size=3, seed=2,
                               image_loss_weight=weight, **FAST))
    model, meta = load_checkpoint(result.checkpoint)
    assert model.config.image_loss_weight == weight
    assert meta["train_args"]["image_loss_weight"] == weight
    data = load_demos([demos], model.config.vq.image_size)
    codes = [model.encode_images(frames).numpy() for frames in data.frames]
    samples, n_action = SampleBuilder(model, data, codes, 3).batch(np.random.default_rng(2),
                                                                   FAST["batch_size"], 1.0)
    batch = collate(samples)
    with torch.no_grad():
        logits = forward_sequence(model.transformer, batch.input_ids, batch.valid)
    logp = torch.log_softmax(logits[:, :-1].double(), -1)
    targets = batch.labels[:, 1:]
    counted = targets != -100
    nll = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    image = (targets >= model.vocab.image_offset) & (
        targets < model.vocab.image_offset + model.vocab.codebook_size)
    assert int((image & counted).sum()) > 0  # the world-model samples' next-frame codes
    w = torch.where(image, weight, 1.0).double() * counted

    def by_hand(rows: slice) -> float:
        return float((w[rows] * nll[rows]).sum() / w[rows].sum())

    (row,) = [r for r in result.losses if r["stage"] == "transformer"]
    assert row["loss"] == pytest.approx(by_hand(slice(None)), rel=1e-5)
    assert row["action_loss"] == pytest.approx(by_hand(slice(None, n_action)), rel=1e-5)
    assert row["world_loss"] == pytest.approx(by_hand(slice(n_action, None)), rel=1e-5)
    if weight != 1.0:  # the weight moves the loss: the check above tells the weights apart
        plain = float((nll * counted).sum() / counted.sum())
        assert abs(row["loss"] - plain) > 1e-3 * plain


# ------------------------------------------------------------------------------------- policy


def test_policy_on_a_real_libero_observation(trained):
    from worldvla_bench.envs.libero_env import LiberoEnv
    from worldvla_bench.integrations.worldvla.policy import WorldVLAPolicy
    from worldvla_bench.policy import EpisodeContext, validate_chunk

    _, result = trained
    # this barely trained model may answer no block (then the safe chunk: K actions)
    policy = WorldVLAPolicy(str(result.checkpoint), max_new_tokens=40, on_broken="continue")
    assert policy.cameras == ("agentview",) and policy.observation_profile == "worldvla"
    assert policy.chunk_size == 3 and policy.action_mask is True
    env = LiberoEnv("libero_spatial", 0, image_size=64, cameras=("agentview",), max_steps=8)
    try:
        obs, _ = env.reset(seed=0, options={"init_state": 0})
        policy.reset(EpisodeContext("libero_spatial", 0, env.task.name, env.instruction, 0, 0, 8))
        chunk = validate_chunk(policy.act(obs))  # one decoded chunk, all K actions at once
        assert np.all(np.abs(chunk) <= 1.0) and len(chunk) == policy.chunk_size
        assert policy.stats["chunks"] == 1 and policy.stats["calls"] == 1
    finally:
        env.close()


def test_policy_prompt_frames_broken_answers_and_chunking(trained, monkeypatch):
    import worldvla_bench.integrations.worldvla.policy as module
    from worldvla_bench.integrations.worldvla.policy import WorldVLAPolicy
    from worldvla_bench.integrations.worldvla.vocab import Vocab
    from worldvla_bench.policy import EndEpisode

    _, result = trained
    seen: list[tuple[int, int]] = []
    replies: list[list[int] | None] = []

    def fake_generate(model, instructions, prev, cur, num_blocks, action_mask, max_new_tokens,
                      constrained):
        assert instructions == [INSTRUCTION] and prev[0].shape == cur[0].shape == (64, 64, 3)
        assert constrained is False  # the default: WorldVLA's unconstrained decoding
        seen.append((int(prev[0][0, 0, 0]), int(cur[0][0, 0, 0])))
        return [replies.pop(0)]

    monkeypatch.setattr(module, "generate_action_tokens", fake_generate)
    policy = WorldVLAPolicy(str(result.checkpoint))
    encode = policy.model.tokenizer.actions.encode
    good = encode(np.tile([0.1, 0, 0, 0, 0, 0, 0.996], (3, 1)))

    def obs(value: int, previous: int | None = None) -> dict:
        """An observation as the engine prepares it for the `worldvla` profile (64 px)."""
        out = {"agentview_image": np.full((64, 64, 3), value, np.uint8),
               "agentview_history": np.zeros((0, 64, 64, 3), np.uint8), "instruction": INSTRUCTION}
        if previous is not None:
            out["agentview_history"] = np.full((1, 64, 64, 3), previous, np.uint8)
        return out

    assert policy.observation_profile == "worldvla" and policy.image_size == 64
    assert policy.on_broken == "end"
    malformed = [Vocab.BOA, *good[1:4], Vocab.EOA]  # 3 values
    replies[:] = [good, [Vocab.EOT], [*malformed, *good[:9]], malformed, None,
                  [*good[:5]], [Vocab.EOA, *malformed], [*good[:5], Vocab.BOA, *good[5:9]]]
    first = policy.act(obs(10))  # first call: the current frame is also the previous one
    # the gripper as decoded (the bin centre of 0.996)
    assert first.shape == (3, 7) and np.allclose(first[:, 6], 0.996, atol=1 / 255)
    with pytest.raises(EndEpisode, match="broken answer: no well-formed action block in the "
                       "answer: no block begun"):
        policy.act(obs(30, previous=20))  # previous env step's frame (20), current (30)
    assert seen == [(10, 10), (20, 30)]
    # a malformed block is skipped (this model's strict decoding); the well-formed one runs.
    # (The official rule would stop there: `decode_chunk` says so, the policy does not use it.)
    _, fault = policy.model.tokenizer.actions.decode_chunk([*good[:9], *malformed])
    assert fault == "action block 2 holds 3 tokens, not 7 action values"
    np.testing.assert_allclose(policy.act(obs(40, previous=30)), first[:1])
    with pytest.raises(EndEpisode, match="answer: no block of exactly 7 action values"):
        policy.act(obs(50, previous=40))
    with pytest.raises(EndEpisode, match="fills the model's context"):
        policy.act(obs(60, previous=50))
    # the cause of the other broken answers: a block the token budget cut short, an end
    # first, a second begin that restarts the block (its first 4 values lost: 3 are left)
    for cause in ("a block begun and never ended", "an end-of-action token before any begin",
                  "no block of exactly 7 action values"):
        with pytest.raises(EndEpisode, match=f"answer: {cause}$"):
            policy.act(obs(60, previous=50))
    assert policy.stats["broken"] == 6 and policy.stats["fallbacks"] == 0

    # on_broken=continue: every well-formed block, else a safe chunk (zero motion, gripper
    # kept, K actions); a stateful policy, so not a batched one
    going = WorldVLAPolicy(str(result.checkpoint), on_broken="continue")
    assert going.act_batch is None
    replies[:] = [good, [Vocab.EOT], [*malformed, *good[:9], *good[:9]]]
    going.act(obs(10))
    fallback = going.act(obs(30, previous=20))
    assert going.stats["fallbacks"] == 1 and going.episode_fallbacks == 1
    assert fallback.shape == (3, 7) and np.all(fallback[:, :6] == 0)
    assert np.all(fallback[:, 6] == first[-1, 6])
    assert len(going.act(obs(40, previous=30))) == 2  # the malformed block skipped

    calls = WorldVLAPolicy(str(result.checkpoint), previous_frame="policy_call")
    assert calls.observation_profile == "worldvla_policy_call"
    calls.reset(None)
    assert calls.fallback_chunk()[0, 6] == -1.0  # a new episode starts with the gripper open
    with pytest.raises(ValueError, match="on_broken"):
        WorldVLAPolicy(str(result.checkpoint), on_broken="maybe")


TINY_BRANCH_SEED = 0  # its batch below mixes chunks and episode ends
BRANCH_TEXTS = [INSTRUCTION, "open the top drawer", "go", "pick up the black bowl and place it"]


def _branching_policy(checkpoint: Path, **kwargs):
    """The `worldvla` policy of `checkpoint` with its transformer reprogrammed
    (`conftest.program_branches`): by prompt, a well-formed block or a malformed answer."""
    from conftest import program_branches

    from worldvla_bench.integrations.worldvla.policy import WorldVLAPolicy
    from worldvla_bench.integrations.worldvla.vocab import Vocab

    policy = WorldVLAPolicy(str(checkpoint), **kwargs)
    net = policy.model.transformer
    torch.manual_seed(TINY_BRANCH_SEED)
    net.apply(net._init_weights)  # random attention: prompt-dependent openings
    net.lm_head.weight = torch.nn.Parameter(net.lm_head.weight.detach().clone())  # untied
    program_branches(net.lm_head.weight, net.embed.weight, (Vocab.BOA, Vocab.EOA, Vocab.EOT),
                     policy.model.tokenizer.vocab.action_offset, TINY_BRANCH_SEED)
    return policy


def test_policy_act_batch_equals_act_one_at_a_time(trained):
    """One left-padded batch of different frames, histories and instructions (the action mask
    on) gives every episode what `act` gives it alone: chunks, and episode ends."""
    from conftest import batch_equals_one_at_a_time

    _, result = trained
    policy = _branching_policy(result.checkpoint, max_new_tokens=40)
    assert policy.action_mask
    kinds = batch_equals_one_at_a_time(policy, BRANCH_TEXTS, 64)
    assert kinds == {"chunk", "end"}, kinds  # the batch mixes both


def test_constrained_decoding_answers_every_call_with_a_whole_chunk(trained):
    """`constrained=True` on a model whose answers are well-formed blocks or malformed ones: no
    call ends the episode, every chunk holds K blocks, the blocks the model emits well formed
    are kept as they are, and a batch still answers as one call at a time."""
    from conftest import batch_equals_one_at_a_time

    from worldvla_bench.policy import EndEpisode

    _, result = trained
    free = _branching_policy(result.checkpoint)
    constrained = _branching_policy(result.checkpoint, constrained=True)
    assert batch_equals_one_at_a_time(constrained, BRANCH_TEXTS, 64) == {"chunk"}
    rng = np.random.default_rng(11)
    kinds = set()
    for i in range(8):
        obs = {"agentview_image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
               "instruction": BRANCH_TEXTS[i % len(BRANCH_TEXTS)]}
        chunk = constrained.act(obs)
        assert chunk.shape == (constrained.chunk_size, 7)
        try:
            alone = free.act(obs)
        except EndEpisode:
            kinds.add("end")
            continue
        kinds.add("chunk")
        np.testing.assert_array_equal(chunk[: len(alone)], alone)
    assert kinds == {"chunk", "end"}, kinds  # both kinds of answer were met
    assert constrained.stats["broken"] == 0 and constrained.stats["partial"] == 0


def test_policy_decodes_well_formed_chunks_in_bounds(trained):
    """The real decoding path: whatever the tiny model emits is a finite (K', 7) chunk within
    the action tokenizer's bounds (decoded bin centres), or the fallback."""
    from worldvla_bench.integrations.worldvla.action_tokenizer import ACTION_MAX, ACTION_MIN
    from worldvla_bench.integrations.worldvla.policy import decode_action_chunk

    _, result = trained
    model, _ = load_checkpoint(result.checkpoint)
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for mask in (True, False):
        chunk, tokens = decode_action_chunk(model, INSTRUCTION, frame, frame, 3, mask, 40)
        assert chunk.ndim == 2 and chunk.shape[1] == 7 and len(chunk) <= 3 and len(tokens) <= 40
        assert np.all(chunk >= ACTION_MIN - 1e-9) and np.all(chunk <= ACTION_MAX + 1e-9)


# -------------------------------------------------------------------------------- world model


def test_world_model_adapter_rolls_out_from_its_own_predictions(trained, monkeypatch):
    from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel
    from worldvla_bench.worldmodel.models import WorldModel

    _, result = trained
    wm = WorldVLAWorldModel(str(result.checkpoint))
    assert isinstance(wm, WorldModel)
    context = np.random.default_rng(0).integers(0, 255, (2, 128, 128, 3), dtype=np.uint8)
    actions = np.zeros((3, 7))
    inputs: list[np.ndarray] = []
    real = wm.model.predict_next_images

    def spy(images, acts):
        inputs.append(images.copy())
        return real(images, acts)

    monkeypatch.setattr(wm.model, "predict_next_images", spy)
    frames = wm.predict(context, actions, INSTRUCTION)
    assert frames.shape == (3, 128, 128, 3) and frames.dtype == np.uint8
    assert len(inputs) == 3 and all(x.shape == (1, 64, 64, 3) for x in inputs)
    assert wm.predict(context, np.zeros((0, 7)), "").shape == (0, 128, 128, 3)
    wm.close()


# ------------------------------------------------------------------------------------ profiles


def test_observation_profiles_gripper_transforms_with_known_values():
    from worldvla_bench.observation_profiles import (
        get_profile,
        gripper_to_env,
        invert_gripper,
        normalize_gripper,
        prepare_image,
        profile_names,
    )

    assert {"libero", "worldvla", "openvla"} <= set(profile_names())
    assert np.allclose(normalize_gripper([0.0, 0.25, 0.5, 1.0]), [-1.0, -0.5, 0.0, 1.0])
    assert np.allclose(normalize_gripper([0.2, 0.7], binarize=True), [-1.0, 1.0])
    assert np.allclose(invert_gripper([-1.0, 0.3]), [1.0, -0.3])
    actions = np.array([[0.1, 0.2, 0.3, 0.0, 0.0, 0.0, g] for g in (0.0, 0.2, 0.7, 1.0)])
    openvla = gripper_to_env(actions, "openvla")  # [0,1] -> [-1,1] -> sign -> inverted
    assert np.allclose(openvla[:, 6], [1.0, 1.0, -1.0, -1.0])  # 0 = close in OpenVLA data
    assert np.allclose(openvla[:, :6], actions[:, :6]) and actions[0, 6] == 0.0  # copy
    decoded = actions.copy()
    decoded[:, 6] = [-0.996, 0.996, 0.5, -0.2]
    assert np.allclose(gripper_to_env(decoded, "worldvla"), decoded)  # as decoded
    worldvla = get_profile("worldvla")
    assert worldvla.cameras == ("agentview",) and worldvla.history == 2
    image = np.zeros((256, 256, 3), np.uint8)
    image[:, 128:] = 200
    assert prepare_image(image, "worldvla", size=64).shape == (64, 64, 3)
    assert prepare_image(image, "openvla").shape == (224, 224, 3)
    assert prepare_image(image, "libero").shape == (256, 256, 3)
    with pytest.raises(ValueError, match="unknown observation profile"):
        get_profile("nope")


# ------------------------------------------------------------------------------------ ablation


def _fake_run(run_dir: Path, outcomes: list[bool], suite: str = "libero_spatial") -> Path:
    from conftest import write_fake_run

    return write_fake_run(run_dir, outcomes, suite=suite)


def test_ablation_table_from_fake_runs(tmp_path):
    from worldvla_bench.integrations.worldvla.ablation import (
        CELLS,
        GRID,
        CellRun,
        ablation_table,
        add_ablation_parser,
        select_cells,
        write_ablation,
    )
    from worldvla_bench.report import wilson_interval

    assert [c.name for c in GRID] == ["action", "action+world", "action_chunk",
                                      "action_chunk+mask", "action+world_chunk+mask"]
    runs = [
        CellRun(CELLS["action"], _fake_run(tmp_path / "a", [True, False, False, False]), 1),
        CellRun(CELLS["action_chunk+mask"], _fake_run(tmp_path / "b", [True] * 9 + [False]), 5),
        CellRun(CELLS["action+world"], tmp_path / "missing", 1),
    ]
    from worldvla_bench.records import EpisodeRecord, append_episode

    append_episode(tmp_path / "a", EpisodeRecord(
        suite="libero_spatial", task_id=1, task_name="t1", instruction="x", trial=0,
        init_state=0, seed=9, policy="worldvla", success=False, steps=3, max_steps=220,
        wall_time_s=1.0, policy_time_s=0.5, env_time_s=0.5, reset_time_s=0.1, policy_calls=3,
        actions_at_bound_frac=0.0, extra={"ended_by_policy": "broken answer: no block"}))
    table = ablation_table(runs)
    assert list(table["trials"]) == [5, 10, 0]
    assert list(table["ended_by_policy"]) == [1, 0, 0]
    assert list(table["policy_calls"]) == [4 * 2 + 3, 10 * 2, 0]  # the records' summed
    assert list(table["successes"]) == [1, 9, 0]
    assert list(table["episodes_min"] * 60) == pytest.approx([5.0, 10.0, 0.0])  # 1 s each
    assert table["train_min"].isna().all()  # no checkpoint to read a training time from
    assert table["success_rate"].iloc[0] == 20.0 and table["success_rate"].iloc[1] == 90.0
    low, high = wilson_interval(9, 10)
    assert table["ci_low"].iloc[1] == pytest.approx(100 * low)
    assert table["ci_high"].iloc[1] == pytest.approx(100 * high)
    written = write_ablation(table, tmp_path / "out")
    md = written["md"].read_text()
    assert "| action_chunk+mask" in md and "K=5" in md and "90.0" in md and "libero_spatial" in md
    assert "[59.6, 98.2]" in md  # Wilson 95% for 9/10
    assert "Time so far: 0.0 h of training (0 of 3 trainings recorded), 0.0 h of episodes" in md
    with written["csv"].open() as stream:
        rows = list(csv.DictReader(stream))
    assert [r["cell"] for r in rows] == ["action", "action_chunk+mask", "action+world"]
    assert [c.name for c in select_cells("action,action_chunk")] == ["action", "action_chunk"]
    with pytest.raises(ValueError, match="unknown ablation cell"):
        select_cells("bogus")

    parser = argparse.ArgumentParser()
    add_ablation_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ablation", "--data", "d.hdf5", "--suite", "libero_spatial",
                              "--tasks", "0", "--trials", "2", "--steps", "10",
                              "--checkpoint", "action=x.pt", "--max-steps", "20"])
    assert (args.suite, args.trials, args.steps, args.max_steps) == ("libero_spatial", 2, 10, 20)
    assert args.checkpoint == ["action=x.pt"] and args.func.__name__ == "cmd_ablation"


# ------------------------------------------------------------------------------ devices, DDP


def test_device_arguments_are_checked(trained):
    from worldvla_bench.integrations.worldvla.devices import resolve_device, use_bf16
    from worldvla_bench.integrations.worldvla.policy import WorldVLAPolicy
    from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel

    _, result = trained
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(BenchError, match="bf16 autocast is for CUDA"):
        use_bf16(torch.device("cpu"), True)
    assert not use_bf16(torch.device("cpu"), None)  # CPU stays float32
    if not torch.cuda.is_available():
        with pytest.raises(BenchError, match="no CUDA device"):
            WorldVLAPolicy(str(result.checkpoint), device="cuda")
        with pytest.raises(BenchError, match="no CUDA device"):
            WorldVLAWorldModel(str(result.checkpoint), device="cuda:0")
    policy = WorldVLAPolicy(str(result.checkpoint), device="cpu")
    assert policy.model.device == torch.device("cpu")


def test_ddp_on_two_gloo_processes_gives_the_one_process_loss_curve(demos, tmp_path):
    """torchrun, 2 CPU processes (gloo), global batch 4 split 2 + 2, against one process with
    batch 4: the same losses at every step. Only float32 summation order differs (gradients
    all-reduced across ranks, shorter padded shards): measured at most 3.2e-7 relative over
    these 4 steps; rtol 1e-5 leaves 30x margin and still catches a wrong split or weighting
    (a mean of per-rank means instead of the global weighted mean moves it by ~1e-3)."""
    import os
    import subprocess
    import sys

    from worldvla_bench.integrations.worldvla.training import iter_loss_rows

    common = ["--data", str(demos), "--config", "tiny", "--chunk-size", "3", "--vq-steps", "2",
              "--steps", "4", "--batch-size", "4", "--vq-batch-size", "4", "--lr", "2e-3",
              "--world-model-weight", "1", "--checkpoint-every", "4", "--no-progress",
              "--seed", "3"]
    single = train(TrainConfig(data=[str(demos)], out=str(tmp_path / "one"), config="tiny",
                               chunk_size=3, vq_steps=2, steps=4, batch_size=4, vq_batch_size=4,
                               lr=2e-3, world_model_weight=1.0, checkpoint_every=4,
                               progress=False, seed=3, threads=1))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "worldvla_bench", "train", *common,
                           "--out", str(tmp_path / "two")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    one = [r for r in single.losses if r["stage"] == "transformer"]
    rows = iter_loss_rows(tmp_path / "two" / "losses.csv")
    two = [r for r in rows if r["stage"] == "transformer"]
    assert [int(r["step"]) for r in two] == [1, 2, 3, 4] == [r["step"] for r in one]
    for key in ("loss", "action_loss", "world_loss"):
        np.testing.assert_allclose([float(r[key]) for r in two], [r[key] for r in one],
                                   rtol=1e-5, err_msg=key)
    assert load_checkpoint(tmp_path / "two")[1]["step"] == 4


def test_learning_curve_reads_each_snapshots_run_diagnosis_and_losses(tmp_path):
    from conftest import write_fake_run

    from worldvla_bench.integrations.worldvla.learning_curve import main
    from worldvla_bench.report import wilson_interval

    write_fake_run(tmp_path / "step_01000" / "policy", [True, False, False, False])
    write_fake_run(tmp_path / "step_00500" / "policy", [False, False])
    (tmp_path / "step_01000" / "diagnosis.json").write_text(json.dumps(
        {"metrics": {"tf_accuracy": 0.8, "rollout_spread_ratio": 0.5}}))
    (tmp_path / "notes").mkdir()  # not a step folder: ignored
    (tmp_path / "step_02000" / "policy").mkdir(parents=True)  # a run not yet started: no figure
    losses = tmp_path / "losses.csv"
    pd.DataFrame({"stage": ["vq"] + ["transformer"] * 4, "step": [1, 250, 500, 750, 1000],
                  "loss": [9.0, 1.0, 2.0, 3.0, 5.0], "action_loss": [9.0, 1, 1, 1, 1],
                  "world_loss": [9.0, 2, 2, 2, 2]}).to_csv(losses, index=False)
    assert main([str(tmp_path), "--losses", str(losses), "--window", "500"]) == 0
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert curve["step"].tolist() == [500, 1000, 2000]  # sorted by step, not by writing order
    assert curve["trials"].tolist()[:2] == [2, 4] and curve["successes"].tolist()[:2] == [0, 1]
    assert np.isnan(curve.loc[2, "success_rate"])
    low, high = wilson_interval(1, 4)
    assert curve.loc[1, ["ci_low", "ci_high"]].tolist() == pytest.approx([100 * low, 100 * high])
    assert curve.loc[1, "tf_accuracy"] == 0.8 and np.isnan(curve.loc[0, "tf_accuracy"])
    # losses over (step - 500, step]: 500 -> steps 250, 500; 1000 -> steps 750, 1000 (VQ rows out)
    assert curve["train_loss"].tolist()[:2] == [1.5, 4.0]
    assert (tmp_path / "curve.png").stat().st_size > 0 and (tmp_path / "curve.md").exists()
    with pytest.raises(BenchError, match="no step_NNNNN folders"):
        main([str(tmp_path / "notes")])

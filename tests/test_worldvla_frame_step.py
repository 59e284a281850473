"""World-model samples that span S steps (`world_frame_step`): the samples training builds, the
checkpoint that records S, the adapter's frames (one per action, a prediction every S actions)
and an imagined episode fed in chunks of any size. Tiny random models, 1 torch thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.diagnosis import diagnose
from worldvla_bench.integrations.worldvla.model import WorldVLA
from worldvla_bench.integrations.worldvla.training import (
    LAST_CHECKPOINT,
    SampleBuilder,
    TrainConfig,
    load_checkpoint,
    load_demos,
    make_synthetic_demos,
    read_checkpoint,
    save_checkpoint,
    train,
)
from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel

torch.set_num_threads(1)

FAST = {"batch_size": 4, "vq_batch_size": 8, "progress": False, "threads": 1}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demos")
    make_synthetic_demos(root / "put_the_red_block_on_the_plate_demo.hdf5", n_demos=2, length=12)
    return root


def random_checkpoint(path: Path, frame_step: int) -> Path:
    torch.manual_seed(0)
    WorldVLA.from_preset("tiny", world_frame_step=frame_step).save(path)
    return path


def test_world_samples_read_frame_t_and_s_actions_and_answer_frame_t_plus_s(demos):
    model = WorldVLA.from_preset("tiny", world_frame_step=3)
    data = load_demos([demos], 64)
    grid = model.config.vq.grid
    # every code of frame t is t: a sample's image tokens name the frames it holds
    codes = [np.broadcast_to(np.arange(len(f))[:, None, None], (len(f), grid, grid))
             for f in data.frames]
    builder = SampleBuilder(model, data, codes, chunk_size=2)
    assert len(builder.world_index) == sum(len(a) - 3 + 1 for a in data.actions)
    offset, tok = model.vocab.image_offset, model.tokenizer
    for episode, t in builder.world_index:
        sample = builder.world_sample(episode, t)
        prompt = sample.input_ids[: sample.prompt_len]
        answer = sample.input_ids[sample.prompt_len :]
        assert {i - offset for i in prompt if offset <= i < offset + 64} == {t}
        assert {i - offset for i in answer if offset <= i < offset + 64} == {t + 3}
        action_tokens = tok.actions.encode(data.actions[episode][t : t + 3])
        assert action_tokens == prompt[-len(action_tokens) - 1 : -1]  # then end of turn
    longer = SampleBuilder(WorldVLA.from_preset("tiny", world_frame_step=20), data, codes, 2)
    with pytest.raises(BenchError, match="no episode has the 20 actions"):
        longer.batch(np.random.default_rng(0), 4, 1.0)
    with pytest.raises(ValueError, match="world_frame_step must be >= 1"):
        WorldVLA.from_preset("tiny", world_frame_step=0)


def test_training_records_the_step_and_refuses_to_resume_under_another(demos, tmp_path):
    common = dict(data=[str(demos)], vq_steps=2, steps=2, chunk_size=3, checkpoint_every=1,
                  world_model_weight=1.0, **FAST)
    train(TrainConfig(out=str(tmp_path), world_frame_step=4, stop_at=1, **common))
    with pytest.raises(BenchError, match="world_frame_step: 4 -> 1"):
        train(TrainConfig(out=str(tmp_path), **common))
    model, meta = load_checkpoint(train(TrainConfig(out=str(tmp_path), world_frame_step=4,
                                                    **common)).checkpoint)
    assert model.config.world_frame_step == 4 and meta["train_args"]["world_frame_step"] == 4
    # a checkpoint from before the argument was trained with WorldVLA's one step
    legacy = tmp_path / "legacy"
    train(TrainConfig(out=str(legacy), stop_at=1, **common))
    saved = read_checkpoint(legacy / LAST_CHECKPOINT)
    del saved["train_args"]["world_frame_step"]
    del saved["config"]["world_frame_step"]
    save_checkpoint(legacy / LAST_CHECKPOINT, saved)
    with pytest.raises(BenchError, match="world_frame_step: 1 -> 2"):
        train(TrainConfig(out=str(legacy), world_frame_step=2, **common))
    assert load_checkpoint(train(TrainConfig(out=str(legacy), **common)).checkpoint)[
        0].config.world_frame_step == 1


def test_adapter_predicts_every_s_actions_and_holds_the_frames_between(tmp_path, monkeypatch):
    wm = WorldVLAWorldModel(str(random_checkpoint(tmp_path / "s3.pt", 3)))
    rng = np.random.default_rng(0)
    context = rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (7, 7))
    calls: list[tuple[np.ndarray, np.ndarray]] = []
    real = wm.model.predict_next_images

    def spy(images, acts, **kwargs):
        out = real(images, acts, **kwargs)
        calls.append((np.array(acts), out.copy()))
        return out

    monkeypatch.setattr(wm.model, "predict_next_images", spy)
    frames = wm.predict(context, actions, "stay")
    assert frames.shape == (7, 64, 64, 3)
    # two complete groups of three actions; the seventh action waits for two more
    assert [a.shape for a, _ in calls] == [(1, 3, 7), (1, 3, 7)]
    assert np.array_equal(calls[0][0][0], actions[:3]) and np.array_equal(calls[1][0][0],
                                                                          actions[3:6])
    first, second = calls[0][1][0], calls[1][1][0]
    for i in (0, 1):  # before the first prediction: the context frame
        assert np.array_equal(frames[i], context[0])
    for i in (2, 3, 4):
        assert np.array_equal(frames[i], first)
    for i in (5, 6):
        assert np.array_equal(frames[i], second)
    with pytest.raises(BenchError, match=r"reads 3 action\(s\)"):
        wm.model.predict_next_codes(wm.model.encode_images(context), actions[:1])


@pytest.mark.parametrize("feedback", ["pixels", "codes"])
def test_an_imagined_episode_in_chunks_of_any_size_equals_one_call(tmp_path, feedback):
    """Chunks of 2, 1, 4, 3 and 1 actions (11 in all, groups of 3): the rollout keeps a partial
    group pending and imagines exactly what one call over the 11 actions does."""
    wm = WorldVLAWorldModel(str(random_checkpoint(tmp_path / "s3.pt", 3)), feedback=feedback)
    rng = np.random.default_rng(1)
    first = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (11, 7))
    whole = wm.predict(first[None], actions, "stay")
    rollout = wm.start_rollout(first, "stay")
    pieces, start = [], 0
    for size in (2, 1, 4, 3, 1):
        piece = rollout.step(actions[start : start + size])
        assert piece.shape == (size, 128, 128, 3)
        assert np.array_equal(rollout.last, piece[-1])
        pieces.append(piece)
        start += size
    assert np.array_equal(np.concatenate(pieces), whole)


def test_diagnosis_pairs_frame_t_with_frame_t_plus_s(tmp_path):
    demos = make_synthetic_demos(tmp_path / "demos" / "task_demo.hdf5", n_demos=2, length=14,
                                 seed=3)
    result = diagnose(random_checkpoint(tmp_path / "s4.pt", 4), [demos], episodes=2, horizon=6,
                      sensitivity_samples=4, use_lpips=False)
    assert result.samples == 2 * (13 - 4 + 1)  # 13 actions per demo, a sample per start step
    metrics = result.metrics
    assert metrics["rollout_psnr_db"] is not None  # at step 4, the last multiple of 4 up to 6
    from worldvla_bench.integrations.worldvla.diagnosis import encode
    from worldvla_bench.worldmodel.data import read_hdf5

    model = WorldVLA.load(tmp_path / "s4.pt").eval()
    codes = [encode(model, e.frames) for e in read_hdf5(demos)]
    same = np.concatenate([c[4:] == c[:-4] for c in codes])
    assert metrics["copy_accuracy"] == pytest.approx(float(same.mean()))

"""Decoding options of the WorldVLA integration: greedy (the default, unchanged) or sampled with a
temperature, top-k and a seed, in `generation.generate`, the `worldvla` policy and the `worldvla`
world model (also its `feedback='codes'` rollout); how bad values are refused; and where the
options are recorded (wm-eval's `wm_eval.json`, wm-rank's `imagination.json`).

Generation is checked on a random `tiny` transformer; the policy on the shipped default, the world
model on a shipped next-frame checkpoint (`NEXT_FRAME`). torch runs on one thread here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldvla_bench.errors import BenchError, RunDirectoryError
from worldvla_bench.integrations.worldvla import (
    ACTION_MAX,
    ACTION_MIN,
    Sampling,
    Vocab,
    WorldVLATokenizer,
    WorldVLATransformer,
    derive_seed,
    generate,
    generate_actions,
    generate_image,
    greedy_generate,
    pad_sequences,
    preset,
)
from worldvla_bench.policy import EndEpisode, EpisodeContext, make_policy
from worldvla_bench.registry import instantiate_check

VOCAB = Vocab(codebook_size=512)
TOK = WorldVLATokenizer(VOCAB)
HOT = Sampling(temperature=1.0, seed=3)
#: a shipped next-frame world model (S = 1: one predicted frame per action), for the world-model
#: tests below, which follow a rollout action by action
NEXT_FRAME = "tiny-libero-goal-v2"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> WorldVLATransformer:
    """Random tiny transformer; a larger init std spreads its logits (sampling varies)."""
    torch.manual_seed(0)
    config = preset("tiny", transformer={"init_std": 0.1})
    return WorldVLATransformer(config.transformer, VOCAB.size).eval()


def _prompts(n: int = 3) -> list[list[int]]:
    rng = np.random.default_rng(5)
    texts = ["open it", "put the bowl on the plate", "push the plate to the front of the stove"]
    return [TOK.action_prompt(texts[i % 3], rng.integers(0, 512, (4, 4)),
                              rng.integers(0, 512, (4, 4))) for i in range(n)]


# -- generation -------------------------------------------------------------------------------
def test_greedy_stays_the_default_bit_for_bit(model):
    ids, valid = pad_sequences(_prompts())
    base = greedy_generate(model, ids, valid, max_new_tokens=12, return_logits=True)
    for sampling in (None, Sampling(), Sampling(temperature=0), Sampling(0.0, top_k=3, seed=9)):
        out = generate(model, ids, valid, max_new_tokens=12, return_logits=True,
                       sampling=sampling)
        assert torch.equal(out.new_tokens, base.new_tokens)
        assert out.logits is not None and base.logits is not None
        assert torch.equal(out.logits, base.logits)
    with pytest.raises(TypeError):  # greedy_generate cannot be asked to sample
        greedy_generate(model, ids, valid, max_new_tokens=2, sampling=HOT)  # type: ignore[misc]


def test_sampling_limits_are_greedy(model):
    ids, valid = pad_sequences(_prompts())
    greedy = greedy_generate(model, ids, valid, max_new_tokens=12).new_tokens
    sampled = generate(model, ids, valid, max_new_tokens=12, sampling=HOT).new_tokens
    assert not torch.equal(sampled, greedy)  # sampling at temperature 1 does change tokens
    for sampling in (Sampling(temperature=1e-6, seed=3), Sampling(temperature=2.0, top_k=1)):
        out = generate(model, ids, valid, max_new_tokens=12, sampling=sampling)
        assert torch.equal(out.new_tokens, greedy), sampling


def test_same_seed_same_tokens_other_seed_other_tokens(model):
    ids, valid = pad_sequences(_prompts())
    first = generate(model, ids, valid, max_new_tokens=12, sampling=HOT, seeds=[1, 2, 3])
    again = generate(model, ids, valid, max_new_tokens=12, sampling=HOT, seeds=[1, 2, 3])
    other = generate(model, ids, valid, max_new_tokens=12, sampling=HOT, seeds=[4, 5, 6])
    assert torch.equal(first.new_tokens, again.new_tokens)
    assert all(not torch.equal(a, b) for a, b in zip(first.new_tokens, other.new_tokens,
                                                     strict=True))
    # without per-row seeds every row draws with `sampling.seed`
    default = generate(model, ids, valid, max_new_tokens=12, sampling=HOT)
    seeded = generate(model, ids, valid, max_new_tokens=12, sampling=HOT, seeds=[3, 3, 3])
    assert torch.equal(default.new_tokens, seeded.new_tokens)
    with pytest.raises(ValueError, match="one seed per prompt"):
        generate(model, ids, valid, max_new_tokens=2, sampling=HOT, seeds=[1])


def test_top_k_draws_only_among_the_k_most_likely(model):
    ids, valid = pad_sequences(_prompts())
    out = generate(model, ids, valid, max_new_tokens=12, sampling=Sampling(3.0, top_k=4),
                   return_logits=True)
    assert out.logits is not None
    top = torch.topk(out.logits, 4, dim=-1).indices  # (B, N, 4)
    assert bool((top == out.new_tokens[..., None]).any(-1).all())
    free = generate(model, ids, valid, max_new_tokens=12, sampling=Sampling(3.0),
                    return_logits=True)
    assert free.logits is not None
    top = torch.topk(free.logits, 4, dim=-1).indices
    assert not bool((top == free.new_tokens[..., None]).any(-1).all())  # the limit mattered


def test_a_batch_samples_as_each_prompt_alone(model):
    prompts = _prompts()
    ids, valid = pad_sequences(prompts)  # left padding: three lengths
    assert len({len(p) for p in prompts}) == 3
    seeds = [11, 12, 13]
    actions = generate_actions(model, TOK, ids, valid, num_blocks=2, constrained=True,
                               sampling=HOT, seeds=seeds)
    images = generate_image(model, TOK, *pad_sequences(
        [TOK.world_prompt(np.full((4, 4), i), np.linspace(ACTION_MIN, ACTION_MAX, 7) * (i - 1))
         for i in range(3)]), grid=(4, 4), sampling=HOT, seeds=seeds)
    for i, prompt in enumerate(prompts):
        alone = generate_actions(model, TOK, torch.tensor([prompt]), num_blocks=2,
                                 constrained=True, sampling=HOT, seeds=[seeds[i]])
        assert alone.tokens[0] == actions.tokens[i]
        image = generate_image(model, TOK, torch.tensor([TOK.world_prompt(
            np.full((4, 4), i), np.linspace(ACTION_MIN, ACTION_MAX, 7) * (i - 1))]),
            grid=(4, 4), sampling=HOT, seeds=[seeds[i]])
        assert torch.equal(image.codes[0], images.codes[i])
    assert len({tuple(t) for t in actions.tokens}) == 3


def test_bad_sampling_values_are_refused():
    for kwargs, match in (({"temperature": -0.1}, "temperature"),
                          ({"temperature": float("nan")}, "temperature"),
                          ({"temperature": "hot"}, "temperature"),
                          ({"top_k": 0}, "top_k"), ({"top_k": 2.5}, "top_k"),
                          ({"top_k": True}, "top_k"), ({"seed": 1.5}, "seed"),
                          ({"seed": "x"}, "seed")):
        with pytest.raises(ValueError, match=match):
            Sampling(**kwargs)


def test_derived_seeds_are_stable_and_distinct():
    frame = np.arange(12, dtype=np.uint8).tobytes()
    key = ("libero_goal", 1, 0, 7)
    assert derive_seed(3, key, 2) == derive_seed(3, list(key), 2)
    seeds = {derive_seed(3, "a", 0), derive_seed(3, "a", 1), derive_seed(4, "a", 0),
             derive_seed(3, "b", 0), derive_seed(3, frame), derive_seed(3, frame[::-1])}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(3, frame) == derive_seed(3, bytearray(frame))
    assert derive_seed(0, "x", 1) == 5944797081500102652  # the same in any process and version


# -- refusal before anything runs ------------------------------------------------------------
@pytest.mark.parametrize(("kind", "kwargs", "match"), [
    ("policy", {"temperature": -1.0}, "temperature must be"),
    ("policy", {"top_k": 0}, "top_k must be"),
    ("policy", {"top_k": 2.5}, "top_k=2.5 is not of type"),
    ("policy", {"seed": "three"}, "seed='three' is not of type"),
    ("world model", {"temperature": -1.0}, "temperature must be"),
    ("world model", {"feedback": "bits"}, "feedback must be one of"),
])
def test_bad_options_are_refused_in_one_line_before_loading(kind, kwargs, match):
    from worldvla_bench.worldmodel.models import make_world_model

    make = make_policy if kind == "policy" else make_world_model
    # a missing checkpoint would fail later, in loading: the options are refused first
    with pytest.raises(BenchError, match=match) as caught:
        make("worldvla", checkpoint="/nonexistent/model.pt", **kwargs)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("bad argument")
    from worldvla_bench.integrations.worldvla.policy import WorldVLAPolicy

    if kind == "policy":  # the check `run_evaluation` makes before any episode
        with pytest.raises(BenchError, match=match):
            instantiate_check(WorldVLAPolicy, kwargs, "policy 'worldvla'")


def test_check_arguments_hook_of_any_plugin():
    class Plugin:
        def __init__(self, size: int = 1) -> None:
            self.size = size

        @classmethod
        def check_arguments(cls, size: int = 1, **_: object) -> None:
            if size < 1:
                raise ValueError(f"size must be >= 1, got {size}")

    instantiate_check(Plugin, {"size": 2}, "plugin")
    with pytest.raises(BenchError, match=r"^bad argument for plugin: size must be >= 1, got 0$"):
        instantiate_check(Plugin, {"size": 0}, "plugin")


# -- the policy -------------------------------------------------------------------------------
def _episodes(n: int = 3, calls: int = 3) -> tuple[list[EpisodeContext], list[list[dict]]]:
    """n episodes of `calls` observations each (64 px frames; history empty at the first)."""
    rng = np.random.default_rng(0)
    texts = ["open the middle drawer of the cabinet", "put the bowl on the stove",
             "push the plate to the front of the stove"]
    contexts = [EpisodeContext("libero_goal", i, f"task{i}", texts[i % 3], i, 100 + i, 50)
                for i in range(n)]
    observations = []
    for context in contexts:
        frames = rng.integers(0, 255, (calls + 1, 64, 64, 3), dtype=np.uint8)
        observations.append([{"agentview_image": frames[c + 1], "instruction": context.instruction,
                              "agentview_history": [frames[c]] if c else []}
                             for c in range(calls)])
    return contexts, observations


def _same(a: np.ndarray | EndEpisode, b: np.ndarray | EndEpisode) -> bool:
    if isinstance(a, EndEpisode) or isinstance(b, EndEpisode):
        return isinstance(a, EndEpisode) and isinstance(b, EndEpisode) and a.reason == b.reason
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _one_at_a_time(policy, contexts, observations) -> list[list[np.ndarray | EndEpisode]]:
    out = []
    for context, episode in zip(contexts, observations, strict=True):
        policy.reset(context)
        answers = []
        for observation in episode:
            try:
                answers.append(policy.act(observation))
            except EndEpisode as ending:
                answers.append(ending)
        out.append(answers)
    return out


def test_policy_samples_reproducibly_and_batches_as_one_at_a_time():
    contexts, observations = _episodes()
    policy = make_policy("worldvla", temperature=1.5, top_k=50, seed=3)
    alone = _one_at_a_time(policy, contexts, observations)
    batched: list[list] = [[] for _ in contexts]
    for call in range(len(observations[0])):  # the episodes interleaved, as a server sees them
        answers = policy.act_batch([episode[call] for episode in observations], contexts)
        for i, answer in enumerate(answers):
            batched[i].append(answer)
    assert all(_same(a, b) for x, y in zip(alone, batched, strict=True)
               for a, b in zip(x, y, strict=True))
    # a rerun of the episodes (a resumed run) replays them: the call index restarts
    assert all(_same(a, b) for x, y in zip(alone, _one_at_a_time(policy, contexts, observations),
                                           strict=True) for a, b in zip(x, y, strict=True))
    other = _one_at_a_time(make_policy("worldvla", temperature=1.5, top_k=50, seed=4), contexts,
                           observations)
    assert not all(_same(a, b) for x, y in zip(alone, other, strict=True)
                   for a, b in zip(x, y, strict=True))
    greedy = _one_at_a_time(make_policy("worldvla"), contexts, observations)
    assert not all(_same(a, b) for x, y in zip(alone, greedy, strict=True)
                   for a, b in zip(x, y, strict=True))
    # the calls of one episode draw differently: the same observation twice, other chunks
    policy.reset(contexts[0])
    repeated = [policy.act(observations[0][1]) for _ in range(3)]
    assert not all(_same(repeated[0], r) for r in repeated[1:])


def test_policy_temperature_zero_is_the_greedy_default():
    contexts, observations = _episodes(n=2, calls=2)
    default = _one_at_a_time(make_policy("worldvla"), contexts, observations)
    for kwargs in ({"temperature": 0}, {"temperature": 0.0, "top_k": 5, "seed": 8}):
        policy = make_policy("worldvla", **kwargs)
        assert policy.sampling.greedy
        assert all(_same(a, b) for x, y in zip(default, _one_at_a_time(policy, contexts,
                                                                          observations),
                                               strict=True) for a, b in zip(x, y, strict=True))


# -- the world model --------------------------------------------------------------------------
def _far(a: np.ndarray, b: np.ndarray) -> bool:
    """Frames that differ by more than decoding noise: over 1% of the values by > 1 level."""
    return bool(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16)) > 1) > 0.01)


def _same_frames(a: np.ndarray, b: np.ndarray) -> None:
    """Equal frames, up to the VQ decoder's batched convolution: a batch rounds a few pixels
    (well under 0.1%) one level away from the same codes decoded alone (greedy decoding too)."""
    assert a.shape == b.shape
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3


def _clips() -> list[tuple]:
    from worldvla_bench.worldmodel.models import PredictionContext

    rng = np.random.default_rng(1)
    return [(rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8), rng.uniform(-1, 1, (n, 7)),
             text, PredictionContext(meta={"episode": f"e{n}"}))
            for n, text in ((3, "open the drawer"), (2, "put the bowl on the stove"),
                            (3, "open the drawer"))]


def test_world_model_default_is_the_greedy_pixel_rollout():
    from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel
    from worldvla_bench.observation_profiles import resize_image

    model = WorldVLAWorldModel(NEXT_FRAME)
    assert model.feedback == "pixels" and model.sampling.greedy
    frames, actions, text, context = _clips()[0]
    current = resize_image(frames[-1], model.image_size)
    expected = []
    for action in actions:  # the rollout as it was: decode, re-encode, greedy
        current = model.model.predict_next_images(current[None], action[None])[0]
        expected.append(current)
    np.testing.assert_array_equal(model.predict(frames, actions, text, context),
                                  np.stack(expected))
    zero = WorldVLAWorldModel(NEXT_FRAME, temperature=0, top_k=3, seed=5)
    np.testing.assert_array_equal(zero.predict(frames, actions, text, context),
                                  np.stack(expected))


def test_world_model_codes_feedback_skips_the_pixel_round_trip():
    from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel
    from worldvla_bench.observation_profiles import resize_image

    model = WorldVLAWorldModel(NEXT_FRAME, feedback="codes")
    pixels = WorldVLAWorldModel(NEXT_FRAME)
    frames, actions, text, context = _clips()[0]
    codes = model.model.encode_images(resize_image(frames[-1], model.image_size)[None])
    expected = []
    for action in actions:
        codes = model.model.predict_next_codes(codes, action[None])
        expected.append(model.model.decode_codes(codes)[0])
    out = model.predict(frames, actions, text, context)
    np.testing.assert_array_equal(out, np.stack(expected))
    by_pixels = pixels.predict(frames, actions, text, context)
    np.testing.assert_array_equal(out[0], by_pixels[0])  # the first step reads the real frame
    # batched clips get what each gets alone
    clips = _clips()
    batched = WorldVLAWorldModel(NEXT_FRAME, feedback="codes", batch_size=2)
    for item, together in zip(clips, batched.predict_many(clips), strict=True):
        _same_frames(together, model.predict(*item))


@pytest.mark.parametrize("feedback", ["pixels", "codes"])
def test_world_model_samples_reproducibly_in_any_batch(feedback):
    from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel

    clips = _clips()
    hot = {"feedback": feedback, "temperature": 1.0, "batch_size": 2}
    model = WorldVLAWorldModel(NEXT_FRAME, seed=3, **hot)
    together = model.predict_many(clips)
    for item, frames in zip(clips, together, strict=True):
        _same_frames(frames, model.predict(*item))
    same = WorldVLAWorldModel(NEXT_FRAME, seed=3, **hot)
    other = WorldVLAWorldModel(NEXT_FRAME, seed=4, **hot)
    greedy = WorldVLAWorldModel(NEXT_FRAME, feedback=feedback, batch_size=2)
    for a, b, c, d in zip(together, same.predict_many(clips), other.predict_many(clips),
                          greedy.predict_many(clips), strict=True):
        np.testing.assert_array_equal(a, b)  # same seed, same batches: the same frames exactly
        assert _far(a, c) and _far(a, d)
    # a clip's seed: the model's seed, the clip's metadata, instruction and last context frame
    frames, _, text, context = clips[0]
    seed = model.clip_seed(frames[-1], text, context)
    assert seed == same.clip_seed(frames[-1], text, context)
    assert len({seed, other.clip_seed(frames[-1], text, context),
                model.clip_seed(frames[0], text, context),
                model.clip_seed(frames[-1], text + ".", context),
                model.clip_seed(frames[-1], text, clips[1][3])}) == 5


# -- where the options are recorded ------------------------------------------------------------
def test_wm_eval_record_holds_the_model_arguments(tmp_path):
    import argparse

    from worldvla_bench.worldmodel.evaluate import write_wm_eval_record

    args = argparse.Namespace(model="worldvla", model_arg=["temperature=0.7", "top_k=20",
                                                           "seed=3", "feedback=codes"],
                              probe="fidelity", data=["x.hdf5"], func=print)
    path = write_wm_eval_record(tmp_path / "out", vars(args))
    record = json.loads(path.read_text())
    assert path.name == "wm_eval.json" and record["model"] == "worldvla"
    assert record["model_args"] == {"temperature": 0.7, "top_k": 20, "seed": 3,
                                    "feedback": "codes"}
    assert record["arguments"]["probe"] == "fidelity" and "func" not in record["arguments"]


def test_wm_eval_writes_its_record_beside_its_outputs(tmp_path, capsys):
    from worldvla_bench.cli import main
    from worldvla_bench.integrations.worldvla.training import make_synthetic_demos

    data = tmp_path / "put_the_bowl_on_the_plate_demo.hdf5"
    make_synthetic_demos(data, n_demos=2, length=12, instruction="put the bowl on the plate")
    out = tmp_path / "wm"
    assert main(["wm-eval", "--model", "worldvla", "--model-arg", "temperature=0.7",
                 "--model-arg", "seed=3", "--model-arg", "feedback=codes", "--data", str(data),
                 "--horizons", "10", "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "wm_eval.json").read_text())
    assert record["model_args"] == {"temperature": 0.7, "seed": 3, "feedback": "codes"}
    assert (out / "summary.csv").exists()


def test_wm_rank_refuses_to_resume_under_other_world_model_arguments(tmp_path):
    from worldvla_bench.worldmodel.models import CopyLast
    from worldvla_bench.worldmodel.rank import IMAGINATION_FILE, imagine_run

    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "manifest.json").write_text(json.dumps(
        {"config": {"suite": "libero_goal", "image_size": 64, "max_steps": 10}}))
    out = tmp_path / "imagined"

    def imagine(world_model_args):
        return imagine_run(sim, out, "noop", {}, "copy-last", CopyLast(), None, "simulator",
                           progress=False, world_model_args=world_model_args)

    imagine({"temperature": 0.7, "seed": 3})
    recorded = json.loads((out / IMAGINATION_FILE).read_text())
    assert recorded["world_model_args"] == {"temperature": 0.7, "seed": 3}
    imagine({"temperature": 0.7, "seed": 3})  # the same arguments resume
    for other in ({"temperature": 0.7, "seed": 4}, {}, None):
        with pytest.raises(RunDirectoryError, match="world_model_args"):
            imagine(other)
    # a run imagined without arguments records none, as before (older runs still resume)
    plain = tmp_path / "plain"
    imagine_run(sim, plain, "noop", {}, "copy-last", CopyLast(), None, "simulator",
                progress=False)
    assert "world_model_args" not in json.loads((plain / IMAGINATION_FILE).read_text())


def test_wm_rank_refuses_to_resume_after_the_world_models_checkpoint_changed(tmp_path):
    """The same arguments, the checkpoint file at the same path replaced (a new shipped default
    under the same name): the imagined run's settings hold the file's sha256, so it is refused."""
    import shutil

    from worldvla_bench.integrations.worldvla.checkpoints import file_sha256
    from worldvla_bench.integrations.worldvla.shipped import shipped_path
    from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel
    from worldvla_bench.worldmodel.rank import IMAGINATION_FILE, imagine_run

    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "manifest.json").write_text(json.dumps(
        {"config": {"suite": "libero_goal", "image_size": 64, "max_steps": 10}}))
    checkpoint, out = tmp_path / "model.pt", tmp_path / "imagined"

    def imagine(source: str) -> None:
        shutil.copy(shipped_path(source), checkpoint)
        args = {"checkpoint": str(checkpoint)}
        imagine_run(sim, out, "noop", {}, "worldvla", WorldVLAWorldModel(**args), None,
                    "simulator", progress=False, world_model_args=args)

    imagine("tiny-libero-goal-early")
    served = json.loads((out / IMAGINATION_FILE).read_text())["world_model_served"]
    assert served["sha256"] == file_sha256(checkpoint) and served["step"] == 500
    imagine("tiny-libero-goal-early")  # the same file resumes
    with pytest.raises(RunDirectoryError, match="world_model_served"):
        imagine("tiny-libero-goal")


def test_eval_records_the_decoding_options_and_refuses_bad_ones_before_any_episode(
        tmp_path, capsys):
    """`eval --policy-arg temperature=...` on real LIBERO (one short episode): the options are in
    the run's manifest, a resume under others is refused, bad ones stop before any episode."""
    from worldvla_bench.cli import main
    from worldvla_bench.records import read_episodes

    run = tmp_path / "run"
    common = ["eval", "--suite", "libero_goal", "--policy", "worldvla", "--tasks", "1",
              "--trials", "1", "--image-size", "64", "--max-steps", "10", "--workers", "1",
              "--run", str(run), "--no-progress", "--no-report"]
    sampled = ["--policy-arg", "temperature=0.7", "--policy-arg", "top_k=20",
               "--policy-arg", "seed=3"]
    assert main(common + sampled) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["policy_kwargs"] == {"temperature": 0.7, "top_k": 20, "seed": 3}
    [record] = read_episodes(run)
    assert record["error"] is None
    capsys.readouterr()
    assert main(common + ["--policy-arg", "temperature=0.7", "--policy-arg", "seed=4"]) == 2
    assert "policy_kwargs" in capsys.readouterr().err
    fresh = tmp_path / "refused"
    for bad, message in (("temperature=-0.5", "temperature must be"), ("top_k=0", "top_k must"),
                         ("top_k=2.5", "top_k=2.5 is not of type"),
                         ("seed=x", "seed='x' is not of type")):
        args = [a if a != str(run) else str(fresh) for a in common]
        assert main(args + ["--policy-arg", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (fresh / "episodes.jsonl").exists()

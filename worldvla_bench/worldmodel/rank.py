"""`wm-rank`: evaluate a panel of policies in LIBERO and in a world model, and compare rankings.

For each policy of a panel (`worldvla_bench.panels`):
1. the simulator: the normal engine (`run_evaluation`), records under `<out>/sim/<policy>/`;
2. imagination, per world model: every simulated episode again, from the same init state and
   scene, its first frame real and the rest imagined (`imagination.imagine_episode`: closed loop
   for policies that read the camera, open loop on the executed actions for blind ones); the
   judge decides success. Records in the run directory `<out>/imagined/<world model>/<policy>/`
   (`RunDir`; `extra.imagined = true`), appended as each episode ends, so a rerun resumes; each
   episode's executed actions in its arrays (`RunDir.save_arrays`), with `--video` also its imagined
   frames (`frames_agentview`: the real first frame, then one per step), which
   `export-lerobot` writes as a LeRobot dataset.

Then one table: per policy the simulated and imagined success with Wilson intervals; per world
model Pearson, Spearman and MMRV over the panel with bootstrap intervals over episodes
(`ranking.ranking_agreement`); the judge's own held-out error beside them; and the costs: world
model seconds per imagined episode against simulator seconds per simulated episode.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from worldvla_bench.atomic import write_atomic
from worldvla_bench.envs.libero_env import LiberoEnv
from worldvla_bench.envs.seeding import scene_of
from worldvla_bench.errors import BenchError, RunDirectoryError
from worldvla_bench.panels import Panel
from worldvla_bench.policy import EpisodeContext, make_policy
from worldvla_bench.protocol import Protocol, RunOptions
from worldvla_bench.report import percent_with_interval
from worldvla_bench.run_dir import IMAGINATION_FILE, RunDir, episode_key  # noqa: F401  (IMAGINATION_FILE: re-exported)
from worldvla_bench.tasks import load_suite
from worldvla_bench.worldmodel.imagination import (
    IMAGINED_CAMERA,
    imagination_mode,
    imagine_episode,
)
from worldvla_bench.worldmodel.models import PredictionContext, WorldModel, make_world_model
from worldvla_bench.worldmodel.optimism import optimism_and_recall
from worldvla_bench.worldmodel.ranking import ranking_agreement


@dataclass(frozen=True)
class RankSetup:
    """What a ranking measures. `protocol`: the simulated episodes' suite, run seed, seeding,
    image size, step limit and render settings (its policy is each panel entry's, whatever it
    names); `options`: which episodes (tasks, trials, first trial) and the simulator's workers
    (its run directory is `<out>/sim/<policy>`, its progress and frames the ranking's);
    `threshold`: the judge's P(success) cut."""

    protocol: Protocol
    options: RunOptions = field(default_factory=RunOptions)
    threshold: float = 0.5
    #: record the simulated episodes' frames and write a side-by-side video per imagined episode
    video: bool = False


def simulate_panel(panel: Panel, setup: RankSetup, out: Path, progress: bool = True
                   ) -> dict[str, Path]:
    """Run (or resume) every panel policy in LIBERO; returns label -> run directory."""
    from worldvla_bench.rollout import run_evaluation

    runs = {}
    for entry in panel.entries:
        protocol = replace(setup.protocol, policy=entry.policy, policy_kwargs=entry.args)
        options = replace(setup.options, run_dir=out / "sim" / entry.name, progress=progress,
                          save_frames=setup.video)
        runs[entry.name] = run_evaluation(protocol, options)
    return runs


def _served(key: str, model: Any) -> dict[str, Any]:
    """{key: what `model` says it runs} (a checkpoint's file, sha256, step), when it says."""
    served = getattr(model, "served_model", None)
    return {key: served()} if callable(served) else {}


def imagine_run(sim_run: Path, out: Path, policy_name: str, policy_args: dict[str, Any],
                world_model: str, model: WorldModel, judge: Any, judge_id: str,
                threshold: float = 0.5, progress: bool = True, video: bool = False,
                world_model_args: dict[str, Any] | None = None,
                slow_call_s: float | None = 10.0) -> Path:
    """Imagine every episode of simulated run `sim_run` into run directory `out` (resumable).
    With `video`, each episode also gets a video (`RunDir.video_path`): the simulated episode
    (left, when `sim_run` was recorded with frames) beside the imagined one (right).
    `world_model_args` (the arguments `model` was built with) are recorded in its settings
    (`RunDir.check_imagination`) when given, and so is what the world model and the policy say
    they run (`served_model()`: a checkpoint's sha256), so a resume under other arguments or
    after a checkpoint file changed is refused.
    A policy call longer than `slow_call_s` seconds is warned about once (`rollout.SlowCalls`);
    an unreachable policy server (`ServerUnreachableError`) stops it, the episodes so far kept."""
    from worldvla_bench.rollout import SlowCalls

    simulated, imagined_run = RunDir(sim_run), RunDir(out)
    records = sorted((r for r in simulated.records() if not r.get("error")),
                     key=lambda r: (r["task_id"], r["trial"]))
    manifest = simulated.read_manifest()
    if manifest is None:
        raise RunDirectoryError(f"simulated run {sim_run} has no manifest: run it again")
    config = manifest["config"]
    policy = make_policy(policy_name, **policy_args)
    imagined_run.check_imagination({"world_model": world_model, "judge": judge_id,
                             "threshold": threshold, "sim_run": str(sim_run),
                             "policy": policy_name, "policy_kwargs": policy_args,
                             "image_size": config["image_size"],
                             "max_steps": config["max_steps"],
                             **({"world_model_args": world_model_args} if world_model_args
                                else {}),
                             **_served("world_model_served", model),
                             **_served("policy_served", policy)})
    pending = imagined_run.pending(records, repair=True)
    suite = load_suite(config["suite"])
    batched = (judge is not None and imagination_mode(policy) == "open"
               and type(model).predict_many is not WorldModel.predict_many)
    group = 32 if batched else 1
    env: LiberoEnv | None = None
    slow_calls = SlowCalls(slow_call_s)
    try:
        with tqdm(total=len(pending), desc=f"{world_model} {out.name}", unit="ep",
                  disable=not progress, file=sys.stderr) as bar:
            for first in range(0, len(pending), group):
                part = pending[first:first + group]
                starts = []
                for record in part:
                    if env is None or env.task.task_id != record["task_id"]:
                        if env is not None:
                            env.close()
                        env = LiberoEnv(suite, record["task_id"], image_size=config["image_size"],
                                        cameras=(IMAGINED_CAMERA,),
                                        max_steps=config["max_steps"],
                                        fast_render=bool(config.get("fast_render", False)))
                    starts.append(_first_observation(env, record))
                actions = [simulated.arrays(r)["actions"]
                           if r.get("episode_file") else None for r in part]
                models: list[WorldModel] = [model] * len(part)
                shared = 0.0
                if batched:  # one batched call imagines the whole group, open loop
                    t0 = time.perf_counter()
                    frames = model.predict_many([
                        (obs[f"{IMAGINED_CAMERA}_image"][None], acts, r["instruction"], ctx)
                        for r, (obs, ctx), acts in zip(part, starts, actions, strict=True)])
                    shared = (time.perf_counter() - t0) / len(part)
                    models = [_Precomputed(f) for f in frames]
                for record, (obs, first_ctx), acts, imagining in zip(part, starts, actions,
                                                                     models, strict=True):
                    context = EpisodeContext(record["suite"], record["task_id"],
                                             record["task_name"], record["instruction"],
                                             record["trial"], record["seed"], record["max_steps"])
                    imagined = imagine_episode(imagining, policy, context, obs, first_ctx, judge,
                                               policy_name=policy_name,
                                               world_model_name=world_model, actions=acts,
                                               threshold=threshold, keep_frames=video)
                    imagined.env_time_s = round(imagined.env_time_s + shared, 4)
                    imagined.wall_time_s = round(imagined.wall_time_s + shared, 4)
                    where = (record["suite"], record["task_id"], record["trial"])
                    frames = imagined.extra.pop("frames") if video else None
                    kept = {f"frames_{IMAGINED_CAMERA}": np.stack(frames)} if video else {}
                    imagined.episode_file = imagined_run.save_arrays(
                        *where, actions=imagined.extra.pop("actions"), **kept)
                    if video:
                        write_side_by_side_episode(imagined_run.video_path(*where),
                                                   _simulated_frames(sim_run, record), frames)
                        imagined.video = imagined_run.video_file(*where)
                    imagined.extra["simulated_success"] = bool(record["success"])
                    imagined.extra["simulated_wall_s"] = record.get("wall_time_s")
                    imagined_run.append(imagined)
                    slow_calls.check(imagined.slowest_call_s, *where[1:])
                    bar.update()
    finally:
        if env is not None:
            env.close()
        policy.close()
    return out


def _first_observation(env: LiberoEnv, record: dict[str, Any]
                       ) -> tuple[dict[str, Any], PredictionContext]:
    """The simulated episode's first observation (same init state and scene), and its state."""
    scene = scene_of(record)
    obs, _ = env.reset(options={"init_state": record["trial"], "scene": scene})
    return obs, PredictionContext(
        meta={**{k: record[k] for k in ("suite", "task_id", "trial", "seed")},
              **scene.to_record()},
        state=env.get_sim_state(), control_state=env.get_control_state())


def _simulated_frames(sim_run: Path, record: dict[str, Any]) -> np.ndarray | None:
    """The simulated episode's frames of the imagined camera, if its run recorded them."""
    if not record.get("episode_file"):
        return None
    arrays = RunDir(sim_run).arrays(record)
    return arrays.get(f"frames_{IMAGINED_CAMERA}")


def write_side_by_side_episode(path: Path, simulated: np.ndarray | None, imagined: np.ndarray,
                               fps: int = 20) -> None:
    """An mp4 of the simulated episode (left; black when not recorded) beside the imagined one
    (right), frame by frame from the shared first frame; the shorter one holds its last frame
    (an episode ends at its success). Frames are resized to the imagined frames' size."""
    from PIL import Image

    from worldvla_bench.episode import write_video

    height, width = imagined.shape[1:3]
    if simulated is None:
        simulated = np.zeros_like(imagined[:1])
    elif simulated.shape[1:3] != (height, width):
        simulated = np.stack([np.asarray(Image.fromarray(f).resize((width, height),
                                                                   Image.BILINEAR))
                              for f in simulated])
    length = max(len(simulated), len(imagined))
    frames = [np.concatenate([simulated[min(i, len(simulated) - 1)],
                              imagined[min(i, len(imagined) - 1)]], axis=1)
              for i in range(length)]
    write_video(path, frames, fps)


class _Precomputed(WorldModel):
    """Frames a batched call imagined already, handed out in order (open loop)."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = np.asarray(frames)
        self.used = 0

    def predict(self, context_frames, actions, instruction, context=None):
        out = self.frames[self.used:self.used + len(actions)]
        self.used += len(actions)
        return out


def rank_tables(sim_runs: dict[str, Path], imagined: dict[str, dict[str, Path]],
                n_boot: int = 2000) -> dict[str, pd.DataFrame]:
    """`per_policy` (simulated and imagined success, costs), `agreement` (one row per world
    model) and `per_episode`, from the run directories."""
    rows, agreement, episodes = [], [], []
    for world_model, runs in imagined.items():
        outcomes = []
        for label, sim_dir in sim_runs.items():
            sim = {episode_key(r): r for r in RunDir(sim_dir).records() if not r.get("error")}
            imag = {episode_key(r): r for r in RunDir(runs[label]).records()}
            keys = sorted(set(sim) & set(imag))
            if not keys:
                raise BenchError(f"no imagined episodes of {label} under {runs[label]}")
            s = np.array([bool(sim[k]["success"]) for k in keys])
            i = np.array([bool(imag[k]["success"]) for k in keys])
            outcomes.append((s, i))
            sim_rate = percent_with_interval(int(s.sum()), len(s))
            imag_rate = percent_with_interval(int(i.sum()), len(i))
            rows.append({
                "world_model": world_model, "policy": label, "episodes": len(keys),
                "simulated": sim_rate[0], "simulated_lo": sim_rate[1], "simulated_hi": sim_rate[2],
                "imagined": imag_rate[0], "imagined_lo": imag_rate[1], "imagined_hi": imag_rate[2],
                "agree_episodes": float(np.mean(s == i)),
                "mode": imag[keys[0]]["extra"].get("mode"),
                "sim_s_per_episode": float(np.mean([sim[k]["wall_time_s"] for k in keys])),
                "wm_s_per_episode": float(np.mean([imag[k]["env_time_s"] for k in keys])),
                "imagined_s_per_episode": float(np.mean([imag[k]["wall_time_s"] for k in keys])),
            })
            episodes += [{"world_model": world_model, "policy": label, "task_id": k[1],
                          "trial": k[2], "simulated": bool(sim[k]["success"]),
                          "imagined": bool(imag[k]["success"]),
                          "p_success_max": imag[k]["extra"].get("p_success_max")} for k in keys]
        agreement.append({"world_model": world_model, "policies": len(outcomes),
                          **ranking_agreement(outcomes, n_boot=n_boot),
                          **_optimism(np.concatenate([s for s, _ in outcomes]),
                                      np.concatenate([i for _, i in outcomes]))})
    return {"per_policy": pd.DataFrame(rows), "agreement": pd.DataFrame(agreement),
            "per_episode": pd.DataFrame(episodes)}


def _optimism(simulated: np.ndarray, imagined: np.ndarray) -> dict[str, Any]:
    """Imagined success on the panel's simulated failures (optimism) and successes (recall),
    in percent with Wilson intervals, over all its episodes, and how many of each."""
    rates = optimism_and_recall(simulated, imagined)
    row: dict[str, Any] = {}
    for name, n in (("optimism", int((~simulated).sum())), ("recall", int(simulated.sum()))):
        row.update({key: rates[key] for key in (name, f"{name}_lo", f"{name}_hi")})
        row[f"{name}_n"] = n
    return row


def format_rank(tables: dict[str, pd.DataFrame], title: str, judge_line: str) -> str:
    """The markdown report of `rank_tables`."""

    def rate(row: pd.Series, key: str) -> str:
        return f"{row[key]:.1f} [{row[key + '_lo']:.1f}, {row[key + '_hi']:.1f}]"

    def value(row: pd.Series, key: str) -> str:
        if row[key] != row[key]:
            return "n/a"
        return f"{row[key]:.2f} [{row[key + '_lo']:.2f}, {row[key + '_hi']:.2f}]"

    def counted(row: pd.Series, key: str) -> str:
        if row[key] != row[key]:
            return f"n/a (of {int(row[key + '_n'])})"
        return f"{rate(row, key)} of {int(row[key + '_n'])}"

    per_policy = tables["per_policy"]
    shown = pd.DataFrame([{
        "world model": r["world_model"], "policy": r["policy"], "mode": r["mode"],
        "episodes": int(r["episodes"]), "simulated %": rate(r, "simulated"),
        "imagined %": rate(r, "imagined"), "same outcome": f"{100 * r['agree_episodes']:.0f}%",
        "s/episode: simulator / world model": (f"{r['sim_s_per_episode']:.1f} / "
                                               f"{r['wm_s_per_episode']:.1f}"),
    } for _, r in per_policy.iterrows()])
    agreement = pd.DataFrame([{
        "world model": r["world_model"], "policies": int(r["policies"]),
        "Pearson": value(r, "pearson"), "Spearman": value(r, "spearman"),
        "MMRV": value(r, "mmrv"),
        "imagined success on simulated failures (optimism) %": counted(r, "optimism"),
        "on simulated successes (recall) %": counted(r, "recall"),
    } for _, r in tables["agreement"].iterrows()])
    return "\n".join([
        f"# {title}", "", "## Ranking agreement over the panel", "",
        agreement.to_markdown(index=False, disable_numparse=True), "",
        "95% bootstrap intervals over episodes. MMRV (SIMPLER): mean over policies of the "
        "largest simulated-rate gap to a policy imagination orders wrongly; 0 is perfect. "
        "Optimism and recall: over every episode of the panel, the share imagined as a success "
        "among those that failed / succeeded in LIBERO (95% Wilson intervals).", "",
        "## Per policy", "", shown.to_markdown(index=False, disable_numparse=True), "",
        "Success in percent with 95% Wilson intervals. mode: closed = the policy acted on "
        "imagined frames; open = the world model imagined the actions the policy executed in "
        "the simulator. Seconds per episode: the simulator's wall time against the world "
        "model's inference time.", "", f"Judge: {judge_line}", ""])


def plot_rank(per_policy: pd.DataFrame, path: Path | None = None, ax=None):
    """Scatter of imagined against simulated success, one point per policy and world model,
    with Wilson error bars; written to `path` (png) when given. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 5))
    for world_model, part in per_policy.groupby("world_model", sort=False):
        xerr = np.vstack([part["simulated"] - part["simulated_lo"],
                          part["simulated_hi"] - part["simulated"]])
        yerr = np.vstack([part["imagined"] - part["imagined_lo"],
                          part["imagined_hi"] - part["imagined"]])
        ax.errorbar(part["simulated"], part["imagined"], xerr=xerr, yerr=yerr, fmt="o",
                    capsize=3, label=str(world_model), alpha=0.8)
        for _, row in part.iterrows():
            ax.annotate(row["policy"], (row["simulated"], row["imagined"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    ax.plot([0, 100], [0, 100], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("simulated success (%)")
    ax.set_ylabel("imagined success (%)")
    ax.set_title("Policies in imagination vs in LIBERO (95% Wilson)")
    ax.legend(fontsize=7)
    if path is not None:
        figure = ax.figure
        figure.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
        if fig is not None:
            plt.close(fig)
    return ax


def wm_rank(panel: Panel, world_models: list[tuple[str, dict[str, Any]]], setup: RankSetup,
            out: Path, judge: Any, judge_id: str, judge_line: str, progress: bool = True,
            n_boot: int = 2000) -> dict[str, Any]:
    """The whole ranking (see the module docstring); writes `ranking.md`, `ranking.csv`,
    `agreement.csv`, `per_episode.csv` and `ranking.png` under `out`. `judge=None` uses the
    simulator's check (only for simulator-backed world models)."""
    sim_runs = simulate_panel(panel, setup, out, progress)
    imagined: dict[str, dict[str, Path]] = {}
    for name, kwargs in world_models:
        model = make_world_model(name, **kwargs)
        try:
            imagined[name] = {
                entry.name: imagine_run(sim_runs[entry.name], out / "imagined" / name / entry.name,
                                        entry.policy, entry.args, name, model, judge, judge_id,
                                        setup.threshold, progress, video=setup.video,
                                        world_model_args=kwargs,
                                        slow_call_s=setup.options.slow_call_s)
                for entry in panel.entries}
        finally:
            model.close()
    tables = rank_tables(sim_runs, imagined, n_boot=n_boot)
    tables["per_policy"].to_csv(out / "ranking.csv", index=False)
    tables["agreement"].to_csv(out / "agreement.csv", index=False)
    tables["per_episode"].to_csv(out / "per_episode.csv", index=False)
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # no display needed for the file
    plot_rank(tables["per_policy"], out / "ranking.png")
    text = format_rank(tables, f"Panel `{panel.name}` on `{setup.protocol.suite}` in LIBERO "
                       f"and in imagination", judge_line)
    write_atomic(out / "ranking.md", text.encode("utf-8"))
    return {"text": text, **tables, "sim_runs": sim_runs, "imagined": imagined}

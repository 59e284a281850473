"""`worldvla-bench`: a thin command line over the library (eval, report, compare, listings)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from worldvla_bench.errors import BenchError
from worldvla_bench.records import EPISODES_FILE, read_episodes
from worldvla_bench.registry import Command, Registry, import_target

RESULTS_ROOT = Path("results")


def _run_path(name: str) -> Path:
    """A run name ('myrun', 'examples/x') lives under results/; an absolute path, or one that
    starts with 'results/' or './', is taken as is."""
    path = Path(name)
    if path.is_absolute() or name.startswith(("./", "results/")):
        return path
    return RESULTS_ROOT / path


def _existing_run_path(name: str) -> Path:
    """A run to read: under results/ as `_run_path` says or, if no run is there, the directory
    of that name relative to the working directory. Neither: one error naming both places."""
    resolved = _run_path(name)
    here = Path(name)
    if (resolved / EPISODES_FILE).exists() or resolved == here:
        return resolved
    if (here / EPISODES_FILE).exists():
        return here
    raise BenchError(f"no run named {name!r}: neither {resolved} nor ./{here} holds "
                     f"{EPISODES_FILE}")


def _protocol(args: argparse.Namespace):
    """The `Protocol` the arguments of `eval` / `record` describe."""
    from worldvla_bench.policy import parse_policy_args
    from worldvla_bench.protocol import Protocol

    return Protocol(suite=args.suite, policy=args.policy,
                    policy_kwargs=parse_policy_args(args.policy_arg), seed=args.seed,
                    seeding=args.seeding, image_size=args.image_size, max_steps=args.max_steps,
                    fast_render=getattr(args, "fast_render", False))


def _add_seeding(parser: argparse.ArgumentParser) -> None:
    from worldvla_bench.envs.seeding import DEFAULT_SEEDING, SEEDINGS

    parser.add_argument("--seeding", default=DEFAULT_SEEDING, choices=tuple(SEEDINGS),
                        help="how scenes are seeded: openvla (env.seed(0) once per task, trials "
                             "in order, as OpenVLA and WorldVLA; default), openpi (the same with "
                             "env.seed(7)), hashed (a hashed seed per episode)")


def _default_run_name(args: argparse.Namespace) -> str:
    return f"{args.suite}_{args.policy.replace(':', '_').replace('.', '_')}"


def cmd_eval(args: argparse.Namespace) -> int:
    from worldvla_bench.protocol import RunOptions
    from worldvla_bench.rollout import run_evaluation

    options = RunOptions(
        run_dir=_run_path(args.run or _default_run_name(args)),
        tasks=args.tasks,
        trials=args.trials,
        first_trial=args.first_trial,
        workers=args.workers,
        backend=args.backend,
        ray_address=args.address,
        video=args.video,
        video_every=args.video_every,
        save_frames=args.save_frames,
        hard_reset=args.hard_reset,
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
        episode_timeout=args.episode_timeout,
    )
    run_dir = run_evaluation(_protocol(args), options)
    status = 0 if args.no_report else _print_report(run_dir)
    errors = sum(1 for r in read_episodes(run_dir) if r.get("error"))
    if errors and not args.allow_errors:
        print(f"worldvla-bench: {errors} episode(s) of {run_dir} ended in an error: re-run with "
              f"--retry-errors (--allow-errors exits 0 all the same)", file=sys.stderr)
        return status or 1
    return status


def cmd_record(args: argparse.Namespace) -> int:
    from worldvla_bench.demos import run_to_hdf5
    from worldvla_bench.protocol import RunOptions
    from worldvla_bench.rollout import run_evaluation

    out = Path(args.out)
    run_dir = out / f"_run_{_default_run_name(args)}"
    run_evaluation(_protocol(args), RunOptions(
        run_dir=run_dir, tasks=args.tasks, trials=args.trials, workers=args.workers,
        save_frames=True, progress=not args.no_progress))
    paths = run_to_hdf5(run_dir, out, successful_only=not args.all_episodes)
    from worldvla_bench.report import write_report

    table = write_report(run_dir)["table"]
    total = table[table["task_id"] == "all"]
    print(total[["suite", "trials", "successes", "success_rate"]].to_string(index=False))
    for path in paths:
        print(f"written: {path}")
    if not paths:
        print("no episode qualified (use --all-episodes to keep failures too)")
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    from worldvla_bench.conformance import ConformanceConfig, run_conformance, summary

    config = ConformanceConfig(
        suite=args.suite, tasks=args.tasks, trials=args.trials,
        sequences=tuple(s for s in args.sequences.split(",") if s), seeding=args.seeding,
        image_size=args.image_size, max_steps=args.max_steps, workers=args.workers,
        out=Path(args.out) if args.out else None, seed=args.seed, state_tol=args.state_tol,
        pixel_tol=args.pixel_tol, progress=not args.no_progress)
    table = run_conformance(config)
    shown = table.assign(state_max_abs_diff=table["state_max_abs_diff"].map("{:.3g}".format),
                         frames_differing=table["frames_differing"].map("{:.2%}".format))
    print(shown.to_string(index=False))
    print()
    print(summary(table).to_string(index=False))
    print(f"written: {config.out_dir / 'conformance.csv'}, {config.out_dir / 'conformance.md'}")
    disagreements = int((~table["agrees"]).sum())
    if disagreements:
        print(f"{disagreements} of {len(table)} episodes disagree with the reference loop",
              file=sys.stderr)
        return 1
    return 0


def _print_report(run_dir: Path) -> int:
    from worldvla_bench.report import write_report

    result = write_report(run_dir)
    print(result["markdown"])
    if result["write_error"]:
        print(f"worldvla-bench: error: {result['write_error']}", file=sys.stderr)
        return 1
    print(f"written: {run_dir / 'report.md'}, {run_dir / 'report.csv'}, "
          f"{run_dir / 'results.json'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from worldvla_bench.html_report import is_rank_output

    ranks = [p for p in (_run_path(args.run[0]), Path(args.run[0])) if is_rank_output(p)]
    if len(args.run) == 1 and ranks:  # a wm-rank output (under results/ or here): its page
        if not args.html:
            raise BenchError(f"{ranks[0]} is a wm-rank output (see its ranking.md); give "
                             "--html DIR for its page")
        from worldvla_bench.html_report import write_rank_html

        print(f"written: {write_rank_html(ranks[0], Path(args.html))}")
        return 0
    run_dirs = [_existing_run_path(run) for run in args.run]
    status = max(_print_report(run_dir) for run_dir in run_dirs)
    if args.html:
        from worldvla_bench.html_report import write_html_report

        print(f"written: {write_html_report(run_dirs, Path(args.html))} (open it in a browser)")
    return status


def cmd_compare(args: argparse.Namespace) -> int:
    from worldvla_bench.compare import compare_runs, format_comparison, format_differences

    run_a, run_b = _existing_run_path(args.run_a), _existing_run_path(args.run_b)
    result = compare_runs(run_a, run_b, alpha=args.alpha)
    print(f"A = {run_a}, B = {run_b}; delta = B - A in points; "
          f"* = p < {args.alpha} (exact McNemar on paired trials, else Fisher)")
    print(format_comparison(result["table"]).to_markdown(index=False, disable_numparse=True))
    differences = result["differences"]
    moving = sum(d.moves_numbers is not False for d in differences)
    if differences:
        print(f"\n{len(differences)} differences between the manifests; {moving} can move the "
              f"numbers or cannot be checked:")
        print(format_differences(differences).to_markdown(index=False, disable_numparse=True))
    else:
        print("\nthe manifests agree on protocol, options, versions, revision and renderer")
    if args.output:
        result["table"].to_csv(args.output, index=False)
        print(f"written: {args.output}")
    return 0


def cmd_wm_eval(args: argparse.Namespace) -> int:
    import pandas as pd

    from worldvla_bench.policy import parse_policy_args
    from worldvla_bench.records import slugify
    from worldvla_bench.tasks import parse_index_list
    from worldvla_bench.worldmodel.data import read_episodes_from
    from worldvla_bench.worldmodel.evaluate import (
        evaluate_world_model,
        write_side_by_side,
        write_wm_eval_record,
    )
    from worldvla_bench.worldmodel.models import make_world_model

    default_horizons = "10" if args.probe == "counterfactual" else "10,50"
    horizons = parse_index_list(args.horizons or default_horizons, 10**6, "horizon")
    episodes = [e for data in args.data for e in read_episodes_from(data, view=args.view)]
    if args.max_episodes:
        episodes = episodes[: args.max_episodes]
    probe = "" if args.probe == "fidelity" else f"_{args.probe}"
    name = args.out or (f"wm_{slugify(args.model)}_{slugify(Path(args.data[0]).stem)}_"
                        f"{args.protocol}{probe}")
    out = _run_path(name)
    write_wm_eval_record(out, vars(args))  # the model's arguments beside its outputs
    if args.probe == "optimism":
        return _optimism_probe(args, episodes, out)
    model = make_world_model(args.model, **parse_policy_args(args.model_arg))
    if args.probe == "counterfactual":
        try:
            return _counterfactual_probe(args, model, episodes, horizons, out)
        finally:
            model.close()
    try:
        result = evaluate_world_model(model, episodes, horizons, protocol=args.protocol,
                                      progress=not args.no_progress)
    finally:
        model.close()
    out.mkdir(parents=True, exist_ok=True)
    result["per_clip"].to_csv(out / "per_clip.csv", index=False)
    summary = result["summary"]
    summary.to_csv(out / "summary.csv", index=False)
    shown = summary.copy()
    for column, digits in (("fvd", 1), ("fvd_gt_split", 1), ("psnr", 2), ("ssim", 3 if not
                           result["protocol"].percent else 2), ("lpips", 3 if not
                           result["protocol"].percent else 2)):
        if column in shown:
            # round first: a rounding residue such as -1e-9 would print as "-0.0"
            shown[column] = shown[column].map(
                lambda v, d=digits: "" if v is None or v != v else f"{round(v, d) + 0.0:.{d}f}")
    text = (f"# World model `{args.model}` on `{', '.join(args.data)}` ({args.view} view), "
            f"protocol `{args.protocol}`\n\n"
            f"{shown.to_markdown(index=False, disable_numparse=True)}\n\n"
            f"fvd_n = clips per set; fvd_gt_split = FVD between two halves of the ground truth "
            f"(the small-sample floor).\n")
    if result["protocol"].reference:  # published figures only beside the protocol they used
        text += f"{result['protocol'].reference}.\n"
    if (summary.get("fvd_n", pd.Series(dtype=float)).fillna(0) < 256).any():
        text += ("warning: FVD from fewer than 256 clips per set is biased and unstable: "
                 "compare models only at equal N, against the ground-truth split.\n")
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    if args.save_video:
        for clip in result["clips"]:
            write_side_by_side(out / "videos" / f"{clip.episode}_h{clip.horizon}.mp4", clip)
    print(f"written: {out}/summary.md, summary.csv, per_clip.csv")
    return 0


def _counterfactual_probe(args: argparse.Namespace, model: Any, episodes: list, horizons: list,
                          out: Path) -> int:
    import pandas as pd

    from worldvla_bench.atomic import write_atomic
    from worldvla_bench.worldmodel.counterfactual import (
        build_contexts,
        format_counterfactual,
        format_counterfactual_summary,
        probe_counterfactuals,
        simulate_truth,
    )
    from worldvla_bench.worldmodel.models import make_world_model

    if len(horizons) != 1:
        raise BenchError(f"--probe counterfactual takes one horizon, got {horizons}")
    contexts = build_contexts(episodes, horizons[0], args.contexts_per_episode, args.seed)
    simulate_truth(contexts, progress=not args.no_progress)  # once, for every model
    names = [args.model] + _baseline_names(args)
    results = {}
    for name in names:
        current = model if name == args.model else make_world_model(name)
        try:
            results[name] = probe_counterfactuals(
                current, episodes, horizons[0], protocol=args.protocol, seed=args.seed,
                fvd=not args.no_fvd, progress=not args.no_progress, contexts=contexts)
        finally:
            if current is not model:
                current.close()
    out.mkdir(parents=True, exist_ok=True)
    for key in ("fidelity", "sensitivity", "per_context", "per_branch"):
        pd.concat([r[key].assign(world_model=name) for name, r in results.items()],
                  ignore_index=True).to_csv(out / f"counterfactual_{key}.csv", index=False)
    title = (f"Counterfactual actions on `{', '.join(args.data)}`, horizon {horizons[0]}, "
             f"protocol `{args.protocol}`")
    text = "\n".join([format_counterfactual_summary(results, title)] + [
        format_counterfactual(result, f"World model `{name}`", level=2)
        for name, result in results.items()])
    write_atomic(out / "counterfactual.md", text.encode("utf-8"))
    print(text)
    print(f"written: {out}/counterfactual.md, counterfactual_*.csv")
    return 0


def _baseline_names(args: argparse.Namespace) -> list[str]:
    """--baselines as a list, without the probed model itself."""
    return [name.strip() for name in (args.baselines or "").split(",")
            if name.strip() and name.strip() != args.model]


def _optimism_probe(args: argparse.Namespace, episodes: list, out: Path) -> int:
    import pandas as pd

    from worldvla_bench.atomic import write_atomic
    from worldvla_bench.policy import parse_policy_args
    from worldvla_bench.worldmodel.judge import load_judge
    from worldvla_bench.worldmodel.models import make_world_model
    from worldvla_bench.worldmodel.optimism import format_optimism, imagine_outcomes, summarise

    if not args.judge:
        raise BenchError("--probe optimism needs --judge PATH (train one with `train-judge`)")
    judge = load_judge(args.judge)
    models = [(args.model, parse_policy_args(args.model_arg))]
    models += [(name, {}) for name in _baseline_names(args)]
    rows, per_episode = [], []
    for name, kwargs in models:
        model = make_world_model(name, **kwargs)
        try:
            outcomes = imagine_outcomes(model, episodes, judge, start=args.start,
                                        last_frames=args.last_frames,
                                        progress=not args.no_progress, desc=name)
        finally:
            model.close()
        rows.append(summarise(outcomes, name))
        per_episode.append(outcomes.assign(world_model=name))
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "optimism.csv", index=False)
    pd.concat(per_episode, ignore_index=True).to_csv(out / "optimism_per_episode.csv",
                                                     index=False)
    text = format_optimism(table, judge.error_line(), (
        f"Optimism: world models imagining {len(episodes)} recorded episodes of "
        f"{', '.join(str(d) for d in args.data)} from frame {args.start} on their own actions; "
        f"the judge reads the last {args.last_frames} imagined frame(s)"))
    write_atomic(out / "optimism.md", text.encode("utf-8"))
    print(text)
    print(f"written: {out}/optimism.md, optimism.csv, optimism_per_episode.csv")
    return 0


def cmd_suites(args: argparse.Namespace) -> int:
    from worldvla_bench.tasks import available_suites, load_suite, unreadable_suite_files

    for name in available_suites():
        spec = load_suite(name)
        print(f"{name:32s} max_steps={spec.max_steps:<4d} trials={spec.trials_per_task:<3d} "
              f"{spec.description}")
    for message in unreadable_suite_files().values():
        print(f"worldvla-bench: warning: {message}", file=sys.stderr)
    return 0


def cmd_policies(args: argparse.Namespace) -> int:
    from worldvla_bench.policy import POLICIES

    for entry in POLICIES.entries():
        print(f"{entry.name:12s} {entry.target_text}")
    print("or any 'package.module:Class' subclassing worldvla_bench.policy.Policy")
    return 0


#: Subcommands beyond the built-in ones above: the core's own, and those installed packages add
#: through the `worldvla_bench.commands` entry points (WorldVLA's train and ablation). Their
#: modules are imported only when the command runs, so the rest start fast.
COMMANDS: Registry[Command] = Registry("command", group="worldvla_bench.commands",
                                       check=lambda obj: isinstance(obj, Command))
COMMANDS.register("serve-policy", Command(
    help="serve a policy over websocket + msgpack (openpi or vla-eval protocol)",
    add_parser="worldvla_bench.serving.serve_cli:add_serve_parser"))
COMMANDS.register("train-judge", Command(
    help="train the success judge (a small CNN) on frames of recorded runs",
    add_parser="worldvla_bench.worldmodel.judge_cli:add_train_judge_parser"))
COMMANDS.register("wm-rank", Command(
    help="rank a panel of policies in LIBERO and in world models, and compare the rankings",
    add_parser="worldvla_bench.worldmodel.rank_cli:add_rank_parser"))
COMMANDS.register("export-lerobot", Command(
    help="write a run recorded with --save-frames as a LeRobot v3 dataset",
    add_parser="worldvla_bench.lerobot_export:add_export_lerobot_parser"))


def _add_registered_commands(sub, argv: list[str] | None) -> None:
    wanted = (argv if argv is not None else sys.argv[1:])[:1]
    for name in COMMANDS.names():
        command = COMMANDS.load(name)
        if name in wanted:
            import_target(command.add_parser)(sub)
        else:
            sub.add_parser(name, help=command.help, add_help=False)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worldvla-bench", description="Evaluate robot policies and world models on LIBERO."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="run (or resume) an evaluation")
    ev.add_argument("--suite", required=True, help="suite name (see `worldvla-bench suites`)")
    ev.add_argument("--policy", default="expert",
                    help="policy name or module:Class (default: the scripted expert)")
    ev.add_argument("--policy-arg", action="append", metavar="KEY=VALUE",
                    help="policy constructor argument (repeatable)")
    ev.add_argument("--tasks", default=None, help="task ids, e.g. '0,3' or '0-4' (default: all)")
    ev.add_argument("--trials", type=int, default=None, help="trials per task (default: suite)")
    ev.add_argument("--first-trial", type=int, default=0,
                    help="first trial (init state index) of each task: trials K..K+N-1, e.g. to "
                         "keep a judge's training episodes apart from the evaluated ones")
    ev.add_argument("--run", default=None, help="run name under results/, or a path")
    ev.add_argument("--workers", type=int, default=None, help="worker processes (default: cores)")
    ev.add_argument("--seed", type=int, default=7, help="run seed (episode seeds derive from it)")
    _add_seeding(ev)
    ev.add_argument("--image-size", type=int, default=None, help="camera px (default: suite)")
    ev.add_argument("--max-steps", type=int, default=None, help="step limit (default: suite)")
    ev.add_argument("--video", action="store_true", help="save an mp4 per episode")
    ev.add_argument("--video-every", type=int, default=1, help="keep every n-th video frame")
    ev.add_argument("--save-frames", action="store_true",
                    help="store every camera frame and sim state per step (world-model track)")
    ev.add_argument("--fast-render", action="store_true",
                    help="no MSAA, no reflections: faster, pixels differ slightly (opt-in)")
    ev.add_argument("--hard-reset", action="store_true",
                    help="rebuild the simulator before every episode, as LIBERO's scripts do "
                         "(slower; same states and pixels as the default reset in place)")
    ev.add_argument("--retry-errors", action="store_true",
                    help="re-run the selected episodes that errored")
    ev.add_argument("--episode-timeout", type=float, default=None, metavar="SECONDS",
                    help="stop an episode (and its worker) that runs longer, recording it as an "
                         "error (default: no limit; local backend)")
    ev.add_argument("--allow-errors", action="store_true",
                    help="exit 0 even if episodes ended in an error (default: exit 1)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.add_argument("--no-report", action="store_true", help="do not print the report at the end")
    ev.add_argument("--backend", default="local", choices=("local", "ray"),
                    help="where workers run: local processes, or Ray (docs/distributed.md)")
    ev.add_argument("--address", default=None,
                    help="Ray cluster to join: 'auto' or HOST:PORT (default: a local Ray instance)")
    ev.set_defaults(func=cmd_eval)

    rc = sub.add_parser("record", help="record demonstrations as LIBERO/robomimic HDF5 files")
    rc.add_argument("--suite", required=True)
    rc.add_argument("--policy", default="expert")
    rc.add_argument("--policy-arg", action="append", metavar="KEY=VALUE")
    rc.add_argument("--tasks", default=None)
    rc.add_argument("--trials", type=int, default=None)
    rc.add_argument("--out", default="results/demos", help="output directory")
    rc.add_argument("--workers", type=int, default=None)
    rc.add_argument("--seed", type=int, default=7)
    _add_seeding(rc)
    rc.add_argument("--image-size", type=int, default=None)
    rc.add_argument("--max-steps", type=int, default=None)
    rc.add_argument("--all-episodes", action="store_true", help="keep failed episodes too")
    rc.add_argument("--no-progress", action="store_true")
    rc.set_defaults(func=cmd_record)

    cf = sub.add_parser("conformance", help="our engine against OpenVLA's/openpi's loop on the "
                                            "raw LIBERO env, same actions (exit 1: disagreement)")
    cf.add_argument("--suite", required=True)
    cf.add_argument("--tasks", default="0", help="task ids, e.g. '0,3' (default: 0)")
    cf.add_argument("--trials", type=int, default=3, help="trials 0..N-1 of each task, in order")
    cf.add_argument("--sequences", default="expert,random",
                    help="action sequences: expert (the scripted expert's), random (seeded)")
    cf.add_argument("--seeding", default="openvla", choices=("openvla", "openpi"),
                    help="the reference loop: env.seed(0) (OpenVLA, WorldVLA) or 7 (openpi)")
    cf.add_argument("--image-size", type=int, default=64, help="camera px (default: 64)")
    cf.add_argument("--max-steps", type=int, default=None, help="step limit (default: suite)")
    cf.add_argument("--workers", type=int, default=None, help="our engine's worker processes")
    cf.add_argument("--seed", type=int, default=7, help="random sequences' and run seed")
    cf.add_argument("--state-tol", type=float, default=0.0, help="largest |state diff| agreeing")
    cf.add_argument("--pixel-tol", type=int, default=0, help="largest |pixel diff| agreeing")
    cf.add_argument("--out", default=None,
                    help="output directory (default: results/conformance/SUITE_SEEDING)")
    cf.add_argument("--no-progress", action="store_true")
    cf.set_defaults(func=cmd_conformance)

    rp = sub.add_parser("report", help="success rates of a run (writes report.md, report.csv and "
                                        "results.json)")
    rp.add_argument("run", nargs="+", help="run name under results/, or a path (several: "
                    "each gets its report; --html compares each with the first), or one "
                    "wm-rank output directory (with --html)")
    rp.add_argument("--html", default=None, metavar="DIR",
                    help="also write a static page (DIR/index.html, videos copied beside it)")
    rp.set_defaults(func=cmd_report)

    cp = sub.add_parser("compare", help="compare two runs with significance tests")
    cp.add_argument("run_a")
    cp.add_argument("run_b")
    cp.add_argument("--alpha", type=float, default=0.05)
    cp.add_argument("--output", default=None, help="also write the table as CSV here")
    cp.set_defaults(func=cmd_compare)

    wm = sub.add_parser("wm-eval", help="score a world model's predicted frames")
    wm.add_argument("--model", required=True, help="copy-last, sim-oracle, or module:Class")
    wm.add_argument("--model-arg", action="append", metavar="KEY=VALUE")
    wm.add_argument("--data", required=True, nargs="+",
                    help="run directories (eval --save-frames) or .hdf5 files")
    wm.add_argument("--horizons", default=None,
                    help="predicted frames per clip, e.g. 10,50 (default 10,50; counterfactual 10)")
    wm.add_argument("--protocol", default="standard", help="standard or worldvla")
    wm.add_argument("--view", default="agentview", help="agentview or wrist")
    wm.add_argument("--max-episodes", type=int, default=None)
    wm.add_argument("--out", default=None, help="output name under results/, or a path")
    wm.add_argument("--save-video", action="store_true", help="mp4: prediction | ground truth")
    wm.add_argument("--probe", default="fidelity",
                    choices=("fidelity", "counterfactual", "optimism"),
                    help="fidelity: frames on the logged actions; counterfactual: branches of "
                    "other actions, each against the simulator's replay (one horizon); "
                    "optimism: does an imagined failed episode end as a failure (--judge)")
    wm.add_argument("--judge", default=None, help="optimism: a judge from `train-judge`")
    wm.add_argument("--start", type=int, default=0,
                    help="optimism: the real frame imagination starts from")
    wm.add_argument("--last-frames", type=int, default=1,
                    help="optimism: imagined frames the judge reads (success if any is)")
    wm.add_argument("--baselines", default="sim-oracle,copy-last",
                    help="optimism and counterfactual: world models scored in the same table "
                    "('' for none)")
    wm.add_argument("--contexts-per-episode", type=int, default=2,
                    help="counterfactual: context frames per episode")
    wm.add_argument("--seed", type=int, default=0, help="counterfactual: noise seed")
    wm.add_argument("--no-fvd", action="store_true", help="counterfactual: skip FVD")
    wm.add_argument("--no-progress", action="store_true")
    wm.set_defaults(func=cmd_wm_eval)

    _add_registered_commands(sub, argv)
    sub.add_parser("suites", help="list the suites").set_defaults(func=cmd_suites)
    sub.add_parser("policies", help="list the built-in policies").set_defaults(func=cmd_policies)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as error:
        print(f"worldvla-bench: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        print("worldvla-bench: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

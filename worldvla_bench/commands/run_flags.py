"""The flags of every command that runs episodes, and the one place they become a `Protocol`,
a `RunOptions` and the episode selection.

eval, record, conformance, wm-rank and WorldVLA's ablation declare their flags with
`add_protocol_flags`, `add_selection_flags` and `add_execution_flags` (eval also
`add_engine_flags`), and build their objects with `protocol_from_args` and `options_from_args`,
so a flag means the same in each command. A command that fixes a value (conformance: no
--policy, no --fast-render, only the seedings that have a reference loop) or defaults it
differently (conformance: --tasks 0, --trials 3, --image-size 64) says so through the
parameters of these functions. tests/test_run_flags.py checks every command's flags.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from worldvla_bench.envs.seeding import DEFAULT_SEEDING, SEEDINGS
from worldvla_bench.errors import BenchError
from worldvla_bench.protocol import Protocol, RunOptions
from worldvla_bench.tasks import parse_index_list

#: How each seeding places the fixtures, for the --seeding help.
SEEDING_HELP = {
    "openvla": "env.seed(0) once per task, trials in order, as OpenVLA and WorldVLA",
    "openpi": "the same with env.seed(7)",
    "hashed": "a hashed seed per episode",
}
#: argparse dest -> `RunOptions` field, for every option flag declared here
OPTION_FIELDS = {
    "tasks": "tasks", "trials": "trials", "first_trial": "first_trial", "workers": "workers",
    "backend": "backend", "address": "ray_address", "hard_reset": "hard_reset",
    "retry_errors": "retry_errors", "episode_timeout": "episode_timeout",
    "cameras": "frame_cameras",
}
#: the parser default that lists the dests declared through this module
_DECLARED = "run_flag_dests"
#: the parser default that names the run seed's dest ('seed', or 'eval_seed' for --eval-seed)
_SEED_DEST = "run_seed_dest"


def _declare(parser: argparse.ArgumentParser, *dests: str) -> None:
    parser.set_defaults(**{_DECLARED: frozenset(parser.get_default(_DECLARED) or ()) | set(dests)})


def add_protocol_flags(parser: argparse.ArgumentParser, *, policy: bool = True,
                       seed_flag: str = "--seed", seed_default: int = 7,
                       seed_help: str = "run seed (episode seeds derive from it)",
                       seedings: tuple[str, ...] | None = None,
                       image_size_default: int | None = None,
                       fast_render: bool = True) -> None:
    """The `Protocol` flags: --suite, --policy and --policy-arg (unless `policy` is False: the
    command chooses the policies), the run seed (`seed_flag`: --seed, or another name where
    --seed is taken, e.g. by a training seed), --seeding
    (`seedings`: the choices offered; default all), --image-size, --max-steps and
    --fast-render (unless `fast_render` is False: the command fixes it off)."""
    parser.add_argument("--suite", required=True, help="suite name (see `worldvla-bench suites`)")
    if policy:
        parser.add_argument("--policy", default="expert",
                            help="policy name or module:Class (default: the scripted expert)")
        parser.add_argument("--policy-arg", action="append", metavar="KEY=VALUE",
                            help="policy constructor argument (repeatable)")
    seed_dest = seed_flag.lstrip("-").replace("-", "_")
    parser.add_argument(seed_flag, type=int, default=seed_default, help=seed_help)
    parser.set_defaults(**{_SEED_DEST: seed_dest})
    choices = tuple(seedings or SEEDINGS)
    parser.add_argument("--seeding", default=DEFAULT_SEEDING, choices=choices,
                        help="how scenes are seeded: " + ", ".join(
                            f"{name} ({SEEDING_HELP[name]}"
                            f"{'; default' if name == DEFAULT_SEEDING else ''})"
                            for name in choices))
    size = f"{image_size_default}" if image_size_default else "suite"
    parser.add_argument("--image-size", type=int, default=image_size_default,
                        help=f"camera px (default: {size})")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="step limit (default: suite)")
    if fast_render:
        parser.add_argument("--fast-render", action="store_true",
                            help="no MSAA, no reflections: faster, pixels differ slightly "
                                 "(opt-in)")
    _declare(parser, "suite", seed_dest, "seeding", "image_size", "max_steps",
             *(("policy", "policy_arg") if policy else ()),
             *(("fast_render",) if fast_render else ()))


def add_selection_flags(parser: argparse.ArgumentParser, *, tasks_default: str | None = None,
                        trials_default: int | None = None, trials: bool = True,
                        first_trial: bool = True, task_keys: bool = False) -> None:
    """The episode selection: --tasks ('0,3', '0-4', 'all'; `task_keys`: also 'suite/id'),
    --trials (per task; default the suite's) and --first-trial (trials K..K+N-1), each unless
    the command fixes it (`trials`, `first_trial` False)."""
    keys = " or 'suite/id'" if task_keys else ""
    parser.add_argument("--tasks", default=tasks_default,
                        help=f"task ids, e.g. '0,3', '0-4' or 'all'{keys} "
                             f"(default: {tasks_default or 'all'})")
    if trials:
        shown = trials_default if trials_default is not None else "suite"
        parser.add_argument("--trials", type=int, default=trials_default,
                            help=f"trials per task (default: {shown})")
    if first_trial:
        parser.add_argument("--first-trial", type=int, default=0,
                            help="first trial (init state index) of each task: trials "
                                 "K..K+N-1, e.g. to keep a judge's training episodes apart "
                                 "from the evaluated ones")
    _declare(parser, "tasks", *(("trials",) if trials else ()),
             *(("first_trial",) if first_trial else ()))


def add_execution_flags(parser: argparse.ArgumentParser,
                        workers_help: str = "worker processes (default: one per core)") -> None:
    """--workers and --no-progress (unless the parser has it already, e.g. from training flags:
    then that one is read, with the same meaning)."""
    parser.add_argument("--workers", type=int, default=None, help=workers_help)
    try:
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    except argparse.ArgumentError:  # declared by the command's other flags
        pass
    _declare(parser, "workers", "no_progress")


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """Where and how the engine runs episodes: --hard-reset, --retry-errors, --episode-timeout,
    --backend, --address."""
    parser.add_argument("--hard-reset", action="store_true",
                        help="rebuild the simulator before every episode, as LIBERO's scripts do "
                             "(slower; same states and pixels as the default reset in place)")
    parser.add_argument("--retry-errors", action="store_true",
                        help="re-run the selected episodes that errored")
    parser.add_argument("--episode-timeout", type=float, default=None, metavar="SECONDS",
                        help="stop an episode (and its worker) that runs longer, recording it "
                             "as an error (default: no limit; local backend)")
    parser.add_argument("--backend", default="local", choices=("local", "ray"),
                        help="where workers run: local processes, or Ray (docs/distributed.md)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join: 'auto' or HOST:PORT (default: a local Ray "
                             "instance)")
    _declare(parser, "hard_reset", "retry_errors", "episode_timeout", "backend", "address")


def add_frame_flags(parser: argparse.ArgumentParser) -> None:
    """--cameras: the cameras whose frames a run stores (`RunOptions.frame_cameras`); a camera
    neither stored nor read by the policy is not rendered."""
    parser.add_argument("--cameras", default=None, metavar="NAMES",
                        help="cameras whose frames are stored, e.g. 'agentview' (default: all "
                             "of the suite's; a camera neither stored nor read by the policy "
                             "is not rendered)")
    _declare(parser, "cameras")


def _declared(args: argparse.Namespace) -> frozenset[str]:
    return frozenset(getattr(args, _DECLARED, None) or ())


def protocol_from_args(args: argparse.Namespace, *, policy: str | None = None,
                       policy_kwargs: dict[str, Any] | None = None) -> Protocol:
    """The `Protocol` the flags describe. `policy` and `policy_kwargs` replace --policy and
    --policy-arg (a command that chooses the policies: a template, its policy replaced per
    run)."""
    from worldvla_bench.policy import parse_key_values

    declared = _declared(args)
    if "policy" in declared:
        policy = policy or args.policy
        if policy_kwargs is None:
            policy_kwargs = parse_key_values(args.policy_arg)
    return Protocol(suite=args.suite, policy=policy or "expert",
                    policy_kwargs=dict(policy_kwargs or {}),
                    seed=getattr(args, getattr(args, _SEED_DEST)), seeding=args.seeding,
                    image_size=args.image_size, max_steps=args.max_steps,
                    fast_render=bool(args.fast_render) if "fast_render" in declared else False)


def options_from_args(args: argparse.Namespace, run_dir: Path | str = RunOptions.run_dir,
                      **fixed: Any) -> RunOptions:
    """The `RunOptions` the flags declared here describe (--tasks 'all' is None: every task),
    with `fixed` fields set by the command (e.g. `save_frames=True`)."""
    declared = _declared(args)
    values: dict[str, Any] = {field: getattr(args, dest) for dest, field in OPTION_FIELDS.items()
                              if dest in declared}
    if values.get("tasks") is not None and str(values["tasks"]).strip().lower() == "all":
        values["tasks"] = None
    if "no_progress" in declared:
        values["progress"] = not args.no_progress
    values.update(fixed)
    return RunOptions(run_dir=Path(run_dir), **values)


def parse_task_keys(text: str | None) -> set[str | int] | None:
    """--tasks of recorded runs of any suite: '1,4', '0-4' (ids) or 'libero_goal/1',
    'libero_goal/0-4' (keys 'suite/id'); None, '' or 'all': every task."""
    if text is None or str(text).strip().lower() in ("", "all"):
        return None
    chosen: set[str | int] = set()
    for part in str(text).split(","):
        suite, sep, ids = part.strip().rpartition("/")
        if (sep and not suite) or ids.strip().lower() in ("", "all"):
            raise BenchError(f"bad task {part.strip()!r} in --tasks: use ids ('1,4', '0-4') or "
                             "'suite/id'")
        try:
            values = parse_index_list(ids, 10**6, "task id")
        except BenchError:
            raise BenchError(f"bad task {part.strip()!r} in --tasks: use ids ('1,4', '0-4') or "
                             "'suite/id'") from None
        chosen |= {f"{suite}/{v}" for v in values} if sep else set(values)
    return chosen

"""`worldvla-bench wm-eval`: score a world model on recorded episodes, by one probe
(`worldvla_bench.worldmodel.probes`): fidelity, counterfactual or optimism."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from worldvla_bench.commands.common import run_path
from worldvla_bench.errors import BenchError

PROBES = ("fidelity", "counterfactual", "optimism")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("wm-eval", help="score a world model's predicted frames")
    parser.add_argument("--model", required=True, help="copy-last, sim-oracle, or module:Class")
    parser.add_argument("--model-arg", action="append", metavar="KEY=VALUE")
    parser.add_argument("--data", required=True, nargs="+",
                        help="run directories (eval --save-frames) or .hdf5 files")
    parser.add_argument("--horizons", default=None,
                        help="predicted frames per clip, e.g. 10,50 (default 10,50; "
                             "counterfactual 10)")
    parser.add_argument("--protocol", default="standard",
                        help="scoring convention: standard or worldvla")
    parser.add_argument("--view", default="agentview", help="agentview or wrist")
    parser.add_argument("--max-episodes", type=int, default=None)
    parser.add_argument("--out", default=None, help="output name under results/, or a path")
    parser.add_argument("--save-video", action="store_true",
                        help="mp4: prediction | ground truth")
    parser.add_argument("--probe", default="fidelity", choices=PROBES,
                        help="fidelity: frames on the logged actions; counterfactual: branches "
                        "of other actions, each against the simulator's replay (one horizon); "
                        "optimism: does an imagined failed episode end as a failure (--judge)")
    parser.add_argument("--judge", default=None, help="optimism: a judge from `train-judge`")
    # probe-specific flags default to None ("not given"): `settle_probe_flags` refuses one given
    # to a probe that does not read it, then fills in the defaults of PROBE_FLAGS
    parser.add_argument("--start", type=int, default=None,
                        help="optimism: the real frame imagination starts from (default 0)")
    parser.add_argument("--last-frames", type=int, default=None,
                        help="optimism: imagined frames the judge reads, success if any is "
                        "(default 1)")
    parser.add_argument("--baselines", default=None,
                        help="optimism and counterfactual: world models scored in the same "
                        "table ('' for none; default sim-oracle,copy-last)")
    parser.add_argument("--contexts-per-episode", type=int, default=None,
                        help="counterfactual: context frames per episode (default 2)")
    parser.add_argument("--seed", type=int, default=None,
                        help="counterfactual: noise seed (default 0)")
    parser.add_argument("--no-fvd", action="store_true", help="counterfactual: skip FVD")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)
    return parser


#: flags only some probes read -> (those probes, the value when not given); the parser leaves
#: them None (store_true ones False) so that a flag given at its default value is still seen
PROBE_FLAGS: dict[str, tuple[tuple[str, ...], Any]] = {
    "judge": (("optimism",), None), "start": (("optimism",), 0),
    "last_frames": (("optimism",), 1),
    "baselines": (("optimism", "counterfactual"), "sim-oracle,copy-last"),
    "contexts_per_episode": (("counterfactual",), 2), "seed": (("counterfactual",), 0),
    "no_fvd": (("counterfactual",), False), "save_video": (("fidelity",), False)}


def settle_probe_flags(args: argparse.Namespace) -> None:
    """Refuse a probe-specific flag given to a probe that does not read it (even at its default
    value), then set every flag not given to its default (PROBE_FLAGS)."""
    for name, (probes, default) in PROBE_FLAGS.items():
        value = getattr(args, name)
        given = value is not None and value is not False  # `--start 0` is given; 0 == False
        if given and args.probe not in probes:
            flag = "--" + name.replace("_", "-")
            raise BenchError(f"{flag} is read by the {' and '.join(probes)} probe"
                             f"{'s' if len(probes) > 1 else ''} only, not by {args.probe}")
        if value is None:
            setattr(args, name, default)


def baseline_names(baselines: str | None, model: str) -> list[str]:
    """--baselines as a list, without the probed model itself."""
    return [name.strip() for name in (baselines or "").split(",")
            if name.strip() and name.strip() != model]


def run(args: argparse.Namespace) -> int:
    """`wm-eval` (see the module docstring)."""
    from worldvla_bench.policy import parse_key_values
    from worldvla_bench.records import slugify
    from worldvla_bench.tasks import parse_index_list
    from worldvla_bench.worldmodel import probes
    from worldvla_bench.worldmodel.data import read_episodes_from
    from worldvla_bench.worldmodel.evaluate import write_wm_eval_record

    settle_probe_flags(args)
    default_horizons = "10" if args.probe == "counterfactual" else "10,50"
    horizons = parse_index_list(args.horizons or default_horizons, 10**6, "horizon")
    episodes = [e for data in args.data for e in read_episodes_from(data, view=args.view)]
    if args.max_episodes:
        episodes = episodes[: args.max_episodes]
    suffix = "" if args.probe == "fidelity" else f"_{args.probe}"
    out = run_path(args.out or (f"wm_{slugify(args.model)}_{slugify(Path(args.data[0]).stem)}_"
                                f"{args.protocol}{suffix}"))
    write_wm_eval_record(out, vars(args))  # the model's arguments beside its outputs
    model = (args.model, parse_key_values(args.model_arg))
    progress = not args.no_progress
    if args.probe == "fidelity":
        result = probes.run_fidelity_probe(
            model, episodes, horizons, out, data=args.data, view=args.view,
            scoring_convention=args.protocol, save_video=args.save_video, progress=progress)
    else:
        models = [model] + [(name, {}) for name in baseline_names(args.baselines, args.model)]
        if args.probe == "counterfactual":
            result = probes.run_counterfactual_probe(
                models, episodes, horizons, out, data=args.data, scoring_convention=args.protocol,
                contexts_per_episode=args.contexts_per_episode, seed=args.seed,
                fvd=not args.no_fvd, progress=progress)
        else:
            if not args.judge:
                raise BenchError("--probe optimism needs --judge PATH (train one with "
                                 "`train-judge`)")
            result = probes.run_optimism_probe(
                models, episodes, args.judge, out, data=args.data, start=args.start,
                last_frames=args.last_frames, progress=progress)
    print(result.text)
    print(f"written: {result.written}")
    return 0

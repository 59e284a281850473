"""`worldvla-bench wm-rank`: its arguments and the command (see `worldmodel.rank`)."""

from __future__ import annotations

import argparse
from typing import Any

from worldvla_bench.commands import run_flags
from worldvla_bench.commands.common import run_path


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "wm-rank", help="rank a panel of policies in LIBERO and in world models, and compare")
    parser.add_argument("--panel", required=True,
                        help="panel name (tasks/panels/<name>.yaml) or a yaml path")
    parser.add_argument("--policies", default=None,
                        help="comma-separated labels of the panel to rank (default: all)")
    parser.add_argument("--world-model", action="append", default=[], metavar="NAME",
                        help="world model to imagine with (repeatable; also sim-oracle, "
                        "copy-last, module:Class)")
    parser.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                        help="argument of the first --world-model (repeatable)")
    parser.add_argument("--judge", default=None,
                        help="success judge from `train-judge`; 'simulator' = the simulator's "
                        "own check (sim-oracle only)")
    parser.add_argument("--threshold", type=float, default=0.5, help="judge P(success) cut")
    run_flags.add_protocol_flags(parser, policy=False)  # the panel names the policies
    run_flags.add_selection_flags(parser)
    run_flags.add_execution_flags(parser, workers_help="simulator workers (default: one per "
                                                       "core)")
    parser.add_argument("--video", action="store_true",
                        help="record the simulated frames and write an mp4 per imagined episode: "
                        "simulated (left) beside imagined (right), under imagined/<wm>/<policy>/"
                        "videos/")
    parser.add_argument("--out", default=None, help="output name under results/, or a path")
    parser.add_argument("--simulate-only", action="store_true",
                        help="run (or resume) only the simulated episodes under <out>/sim/, e.g. "
                        "while a judge trains; a later wm-rank with the same --out reuses them")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from worldvla_bench.errors import BenchError
    from worldvla_bench.panels import load_panel
    from worldvla_bench.policy import parse_key_values
    from worldvla_bench.records import slugify
    from worldvla_bench.worldmodel.rank import RankSetup, simulate_panel, wm_rank

    panel = load_panel(args.panel)
    if args.policies:
        panel = panel.select([p.strip() for p in args.policies.split(",") if p.strip()])
    setup = RankSetup(protocol=run_flags.protocol_from_args(args),
                      options=run_flags.options_from_args(args), threshold=args.threshold,
                      video=args.video)
    out = run_path(args.out or f"rank_{slugify(panel.name)}_{slugify(args.suite)}")
    if args.simulate_only:
        runs = simulate_panel(panel, setup, out, progress=not args.no_progress)
        print(f"simulated {len(runs)} policies under {out}/sim/")
        return 0
    if not args.world_model:
        raise BenchError("give at least one --world-model (or --simulate-only)")
    world_models = [(name, parse_key_values(args.model_arg) if i == 0 else {})
                    for i, name in enumerate(args.world_model)]
    if args.judge in (None, "simulator"):
        if any(name != "sim-oracle" for name, _ in world_models):
            raise BenchError("--judge is needed: only sim-oracle can be judged by the simulator")
        judge, judge_id, judge_line = None, "simulator", "the simulator's own success check"
    else:
        from worldvla_bench.worldmodel.judge import load_judge

        judge = load_judge(args.judge)
        judge_id, judge_line = str(args.judge), judge.error_line()
    result = wm_rank(panel, world_models, setup, out, judge, judge_id, judge_line,
                     progress=not args.no_progress)
    print(result["text"])
    print(f"written: {out}/ranking.md, ranking.csv, agreement.csv, per_episode.csv, "
          "ranking.png")
    return 0

"""`worldvla-bench wm-rank`: its arguments and the command (see `worldmodel.rank`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_rank_parser(sub: Any) -> argparse.ArgumentParser:
    from worldvla_bench.cli import _add_seeding

    parser = sub.add_parser(
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
    parser.add_argument("--suite", required=True)
    parser.add_argument("--tasks", default=None, help="task ids, e.g. '0,3' (default: all)")
    parser.add_argument("--trials", type=int, default=None, help="trials per task")
    parser.add_argument("--image-size", type=int, default=None, help="camera px (default suite)")
    parser.add_argument("--max-steps", type=int, default=None, help="step limit (default suite)")
    parser.add_argument("--threshold", type=float, default=0.5, help="judge P(success) cut")
    _add_seeding(parser)
    parser.add_argument("--workers", type=int, default=None, help="simulator workers")
    parser.add_argument("--video", action="store_true",
                        help="record the simulated frames and write an mp4 per imagined episode: "
                        "simulated (left) beside imagined (right), under imagined/<wm>/<policy>/"
                        "videos/")
    parser.add_argument("--out", default=None, help="output name under results/, or a path")
    parser.add_argument("--simulate-only", action="store_true",
                        help="run (or resume) only the simulated episodes under <out>/sim/, e.g. "
                        "while a judge trains; a later wm-rank with the same --out reuses them")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=cmd_rank)
    return parser


def cmd_rank(args: argparse.Namespace) -> int:
    from worldvla_bench.cli import _run_path
    from worldvla_bench.errors import BenchError
    from worldvla_bench.panels import load_panel
    from worldvla_bench.policy import parse_policy_args
    from worldvla_bench.records import slugify
    from worldvla_bench.worldmodel.rank import RankSetup, simulate_panel, wm_rank

    panel = load_panel(args.panel)
    if args.policies:
        panel = panel.select([p.strip() for p in args.policies.split(",") if p.strip()])
    setup = RankSetup(suite=args.suite, tasks=args.tasks, trials=args.trials,
                      image_size=args.image_size, max_steps=args.max_steps,
                      threshold=args.threshold, workers=args.workers, seeding=args.seeding,
                      video=args.video)
    out = _run_path(args.out or f"rank_{slugify(panel.name)}_{slugify(args.suite)}")
    if args.simulate_only:
        runs = simulate_panel(panel, setup, out, progress=not args.no_progress)
        print(f"simulated {len(runs)} policies under {out}/sim/")
        return 0
    if not args.world_model:
        raise BenchError("give at least one --world-model (or --simulate-only)")
    world_models = [(name, parse_policy_args(args.model_arg) if i == 0 else {})
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
    print(f"written: {out}/ranking.md, ranking.csv, agreement.csv, per_episode.csv, ranking.png")
    return 0

"""`worldvla-bench train-judge`: train the success judge on recorded runs, print its table.

    worldvla-bench train-judge --runs judge/goal_expert judge/goal_random --out judge.pt

Writes the checkpoint (`load_judge(path)`: weights, tasks, held-out metrics, provenance) and its
held-out metrics as `<out stem>_metrics.md` and `.csv` beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from worldvla_bench.commands import run_flags
from worldvla_bench.commands.common import existing_run_path
from worldvla_bench.errors import BenchError


def format_table(rows: list[dict[str, Any]]) -> str:
    """The held-out metrics as a markdown table (3 decimals; n/a where undefined)."""
    import pandas as pd

    columns = ["scope", "task", "episodes", "n", "positives", "majority_rate", "accuracy",
               "balanced_accuracy", "precision", "recall", "ece", "brier"]
    table = pd.DataFrame(rows)[columns]
    for column in columns[5:]:
        table[column] = table[column].map(lambda v: "n/a" if v != v else f"{v:.3f}")
    return table.to_markdown(index=False, disable_numparse=True)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from worldvla_bench.worldmodel.judge import ECE_BINS, TrainConfig, train_judge
    from worldvla_bench.worldmodel.judge_data import policy_of_run, read_labelled_runs

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # on a shared machine 1 can be faster than 2
    runs = [existing_run_path(name) for name in args.runs]
    out = Path(args.out)
    if out.suffix != ".pt":
        raise BenchError(f"--out must end in .pt, got {out}")
    data = read_labelled_runs(runs, run_flags.parse_task_keys(args.tasks), every=args.every,
                              hold_steps=args.hold_steps, hold_still=args.hold_still,
                              progress=not args.no_progress)
    print(f"{len(data)} frames ({int(data.labels.sum())} successes, {int(data.hold.sum())} hold "
          f"frames) of {len(set(data.episode))} episodes, tasks {sorted(map(str, set(data.task)))}")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         image_size=args.image_size, held_out=args.held_out, seed=args.seed)
    provenance = {"runs": {str(r): policy_of_run(r) for r in runs}, "every": args.every,
                  "hold_steps": args.hold_steps, "hold_still": args.hold_still,
                  "tasks": args.tasks or "all"}
    judge, rows = train_judge(data, config, progress=not args.no_progress, provenance=provenance)
    judge.save(out)
    table = format_table(rows)
    p = judge.provenance
    text = (f"# Success judge `{out}`\n\n"
            f"Held out: {len(p['held_out_episodes'])} episodes ({p['held_out_frames']} frames), "
            f"split by episode; trained on {p['train_episodes']} episodes ({p['train_frames']} "
            f"frames, {p['train_positives']} successes), {config.epochs} epochs, "
            f"{p['parameters']} parameters, {config.image_size} px, {p['train_seconds']} s.\n\n"
            f"{table}\n\n"
            f"scope: frames = every held-out frame (hold frames included); recorded = the "
            f"recorded episodes' frames only; final = each episode's last recorded frame, "
            f"labelled by its outcome. Threshold 0.5; majority_rate = accuracy of always "
            f"answering the commoner label; ECE over {ECE_BINS} equal-width bins.\n")
    stem = out.with_suffix("")
    Path(f"{stem}_metrics.md").write_text(text, encoding="utf-8")
    pd.DataFrame(rows).to_csv(f"{stem}_metrics.csv", index=False)
    print(text)
    print(judge.error_line())
    print(f"written: {out}, {stem}_metrics.md, {stem}_metrics.csv")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `train-judge --runs RUN [RUN ...] --out PATH.pt [...]`."""
    tj = subparsers.add_parser(
        "train-judge", help="train the success judge (a small CNN) on frames of recorded runs")
    tj.add_argument("--runs", nargs="+", required=True,
                    help="runs recorded with `eval --save-frames` (names under results/, or paths)")
    tj.add_argument("--out", required=True, help="checkpoint path, ending in .pt")
    # the runs' episodes of these tasks (any suite; 'suite/id' for one suite's)
    run_flags.add_selection_flags(tj, trials=False, first_trial=False, task_keys=True)
    tj.add_argument("--epochs", type=int, default=20)
    tj.add_argument("--batch-size", type=int, default=64)
    tj.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (one cycle)")
    tj.add_argument("--image-size", type=int, default=64,
                    help="px the judge reads (a multiple of 16)")
    tj.add_argument("--every", type=int, default=1,
                    help="keep every n-th frame of an episode (positives and last frames always)")
    tj.add_argument("--hold-steps", type=int, default=20,
                    help="hold frames after each success, labelled by the simulator (0: none; "
                         "cached in <run>/judge_hold/)")
    tj.add_argument("--hold-still", type=int, default=None,
                    help="hold frames with the arm still before the hand lifts (default: all)")
    tj.add_argument("--held-out", type=float, default=0.25, help="share of episodes held out")
    tj.add_argument("--seed", type=int, default=0, help="split, initialisation and batches")
    tj.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's; 1 is faster on a busy machine)")
    tj.add_argument("--no-progress", action="store_true")
    tj.set_defaults(func=run)
    return tj

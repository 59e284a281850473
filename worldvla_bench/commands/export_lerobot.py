"""`worldvla-bench export-lerobot RUN OUT`: a run recorded with --save-frames (or an imagined
run of wm-rank --video) as a LeRobot v3 dataset (see `worldvla_bench.lerobot_export`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from worldvla_bench.commands.common import existing_run_path


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from worldvla_bench.lerobot_export import VIDEO_CODECS

    parser = subparsers.add_parser(
        "export-lerobot", help="write a run recorded with --save-frames as a LeRobot v3 dataset")
    parser.add_argument("run", help="run name under results/, or a path (eval --save-frames)")
    parser.add_argument("out", help="the dataset's root directory (must not exist)")
    parser.add_argument("--repo-id", default=None,
                        help="the dataset's name in its metadata (default: local/<run>)")
    parser.add_argument("--vcodec", default="libsvtav1", choices=VIDEO_CODECS,
                        help="video codec (default: LeRobot's, AV1; h264 plays in browsers)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from worldvla_bench.lerobot_export import CODEBASE_VERSION, export_lerobot

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local dataset: never ask a hub
    os.environ.setdefault("SVT_LOG", "1")  # the AV1 encoder's errors only, not its banner
    result = export_lerobot(existing_run_path(args.run), Path(args.out), repo_id=args.repo_id,
                            vcodec=args.vcodec, progress=not args.no_progress)
    skipped = (f"; {result['skipped_errors']} episodes that ended in an error left out"
               if result["skipped_errors"] else "")
    print(f"written: {result['root']} (LeRobot {CODEBASE_VERSION}: {result['episodes']} "
          f"episodes, {result['frames']} frames{skipped})")
    return 0

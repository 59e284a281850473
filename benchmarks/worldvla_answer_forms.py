"""How often a tiny WorldVLA's action answers are malformed, and which tokens it puts there.

Asks the `worldvla` policy's own generation (`policy.generate_action_tokens`: greedy, K blocks,
the checkpoint's action mask) for an action chunk at every `--every`-th step of recorded episodes
(a run made with `--save-frames`; the prompt holds the frame of the previous env step and the
current one, as the policy's) and sorts the answers: `complete` (K well-formed blocks), `partial`
(fewer: the strict decoder skips the malformed ones), `none` (no well-formed block: the policy
ends the episode there unless `on_broken=continue`). Each malformed answer is printed as a
pattern: B begin, E end of action, T end of turn, v value, I image code, x text. With
`--constrained` every answer must come out complete (`constrained=True`).

    .venv/bin/python benchmarks/worldvla_answer_forms.py CHECKPOINT RUN_DIR [--every 5]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def token_kind(vocab, token: int) -> str:
    """One letter per token (module docstring)."""
    from worldvla_bench.integrations.worldvla.vocab import Vocab

    named = {Vocab.BOA: "B", Vocab.EOA: "E", Vocab.EOT: "T"}
    if token in named:
        return named[token]
    if token in vocab.action_ids:
        return "v"
    if token in vocab.image_ids:
        return "I"
    return "x" if vocab.text_offset <= token < vocab.action_offset else f"<{token}>"


def answer_forms(checkpoint: str, run_dir: str, every: int = 5, episodes: int | None = None,
                 batch: int = 16, constrained: bool = False) -> dict:
    """Counts of complete / partial / none answers and the malformed answers' patterns."""
    import torch

    from worldvla_bench.integrations.worldvla.policy import generate_action_tokens
    from worldvla_bench.integrations.worldvla.training import load_checkpoint
    from worldvla_bench.worldmodel.data import read_run

    model, meta = load_checkpoint(checkpoint)
    model.eval()
    k = int(meta["chunk_size"])
    queries = []
    for n, episode in enumerate(read_run(run_dir)):
        if episodes is not None and n >= episodes:
            break
        for t in range(0, len(episode.actions), every):
            queries.append((episode.instruction, episode.frames[max(t - 1, 0)],
                            episode.frames[t]))
    counts: collections.Counter = collections.Counter()
    patterns: collections.Counter = collections.Counter()
    for start in range(0, len(queries), batch):
        part = queries[start:start + batch]
        with torch.no_grad():
            answers = generate_action_tokens(model, [q[0] for q in part], [q[1] for q in part],
                                             [q[2] for q in part], k, bool(meta["action_mask"]),
                                             constrained=constrained)
        for tokens in answers:
            blocks = len(model.tokenizer.actions.block_bins(tokens or []))
            form = "complete" if blocks >= k else ("partial" if blocks else "none")
            counts[form] += 1
            if form != "complete":
                patterns["".join(token_kind(model.tokenizer.vocab, t) for t in tokens or [])] += 1
    return {"checkpoint": checkpoint, "run": run_dir, "every": every, "calls": len(queries),
            "constrained": constrained, "forms": dict(counts),
            "malformed_patterns": patterns.most_common(20)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("run_dir")
    parser.add_argument("--every", type=int, default=5, help="query every N-th step")
    parser.add_argument("--episodes", type=int, default=None, help="the first N episodes only")
    parser.add_argument("--constrained", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(json.dumps(answer_forms(args.checkpoint, args.run_dir, args.every, args.episodes,
                                  constrained=args.constrained), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

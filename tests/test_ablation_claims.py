"""The claims tables of the WorldVLA ablation (`worldvla_bench.paired`,
`integrations/worldvla/claims.py`) on synthetic paired episodes with known answers, and the
ablation command end to end: two cells, two training seeds, tiny models, real LIBERO rollouts."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from worldvla_bench.errors import BenchError
from worldvla_bench.integrations.worldvla.ablation import recorded_episodes
from worldvla_bench.integrations.worldvla.claims import (
    CLAIMS,
    CONTRADICTED,
    NOT_RUN,
    PAPER_LIBERO_AVERAGE,
    SUPPORTED,
    UNRESOLVED,
    claims_table,
    format_summary,
    verdict,
    write_claims,
)
from worldvla_bench.paired import (
    bootstrap_difference,
    discordant,
    mcnemar,
    mcnemar_by,
    pair_episodes,
    pairs_needed,
)


def _episodes(cell: str, outcomes: dict[tuple[int, int], list[bool]],
              suite: str = "libero_goal") -> pd.DataFrame:
    """Episodes of one cell: outcomes[(task, train_seed)] lists the successes of trials 0..n-1.
    The episode seed is set from the trial, as in a run (it must not be taken for the
    training seed)."""
    rows = [{"cell": cell, "suite": suite, "task_id": task, "trial": trial, "train_seed": seed,
             "seed": 1000 + trial, "success": success, "is_error": False}
            for (task, seed), successes in outcomes.items()
            for trial, success in enumerate(successes)]
    return pd.DataFrame(rows)


# -------------------------------------------------------------------------------- pairing


def test_episodes_pair_by_task_trial_and_training_seed_not_by_row_order():
    a = _episodes("action", {(0, 0): [True, True, False, False], (1, 0): [True, False],
                             (0, 1): [False, False]})
    b = _episodes("action+world", {(0, 0): [True, False, True, True], (1, 0): [False, True],
                                   (0, 1): [True, True]})
    # B shuffled, with an episode A does not have (task 2): row order and length differ
    extra = pd.DataFrame([{**b.iloc[0].to_dict(), "task_id": 2}])
    b = pd.concat([b, extra]).sample(frac=1.0, random_state=3).reset_index(drop=True)
    pairs = pair_episodes(a, b)
    assert len(pairs) == 8
    # by key: task 0 seed 0: (T,T) (T,F) (F,T) (F,T); task 1: (T,F) (F,T); seed 1: (F,T) x2
    assert discordant(pairs) == (2, 5)
    by_index = (a["success"].to_numpy(), b["success"].to_numpy()[:len(a)])
    assert (int((by_index[0] & ~by_index[1]).sum()),
            int((~by_index[0] & by_index[1]).sum())) != (2, 5)  # the shuffle matters
    # the same trial under another training seed is another pair
    assert set(pairs["train_seed"]) == {0, 1}
    assert pairs[(pairs["task_id"] == 0) & (pairs["trial"] == 0)].shape[0] == 2


def test_a_repeated_episode_is_refused():
    a = _episodes("action", {(0, 0): [True, False]})
    with pytest.raises(BenchError, match="appears twice"):
        pair_episodes(pd.concat([a, a.iloc[:1]]), a)


def test_mcnemar_pooled_and_per_seed_have_the_exact_values():
    # seed 0: 6 pairs only B succeeded; seed 1: 3 only A, 3 only B, 2 both
    a = _episodes("x", {(0, 0): [False] * 6, (0, 1): [True] * 3 + [False] * 3 + [True] * 2})
    b = _episodes("y", {(0, 0): [True] * 6, (0, 1): [False] * 3 + [True] * 3 + [True] * 2})
    pairs = pair_episodes(a, b)
    by_seed = mcnemar_by(pairs)
    assert by_seed[0] == pytest.approx(2 * 0.5**6)  # 0.03125
    assert by_seed[1] == pytest.approx(1.0)
    # pooled: 3 only A, 9 only B of 12 discordant
    assert mcnemar(pairs) == pytest.approx(2 * binom.cdf(3, 12, 0.5))


# ------------------------------------------------------------------------------ bootstrap


def test_bootstrap_interval_of_a_constant_difference_is_that_difference():
    # every (task, seed) cluster has the same mean difference, 1/3: so has every resample
    outcomes_a = {(t, s): [False, True, False] for t in range(4) for s in range(2)}
    outcomes_b = {(t, s): [True, True, False] for t in range(4) for s in range(2)}
    pairs = pair_episodes(_episodes("a", outcomes_a), _episodes("b", outcomes_b))
    low, high = bootstrap_difference(pairs, n_resamples=500)
    assert low == pytest.approx(1 / 3) and high == pytest.approx(1 / 3)


def test_bootstrap_of_a_single_cluster_resamples_its_pairs():
    # one task, one seed: 3 of 10 pairs only B succeeded. Resampling the pairs: the difference
    # is Binomial(10, 0.3) / 10, whose 2.5% and 97.5% quantiles are 0.0 and 0.6
    a = _episodes("a", {(0, 0): [False] * 10})
    b = _episodes("b", {(0, 0): [True] * 3 + [False] * 7})
    low, high = bootstrap_difference(pair_episodes(a, b), n_resamples=20_000, seed=2)
    assert (low, high) == (binom.ppf(0.025, 10, 0.3) / 10, binom.ppf(0.975, 10, 0.3) / 10)


@pytest.mark.parametrize("over", ["tasks", "seeds"])
def test_bootstrap_over_two_clusters_spans_exactly_their_differences(over):
    # two clusters of 4 pairs, differences 0.25 and 0.75: resampling two clusters gives
    # 0.25 (p 1/4), 0.5 (1/2), 0.75 (1/4), so the 2.5% and 97.5% quantiles are 0.25 and 0.75
    first, second = (0, 0), (1, 0) if over == "tasks" else (0, 1)
    a = _episodes("a", {first: [False] * 4, second: [False] * 4})
    b = _episodes("b", {first: [True, False, False, False], second: [True, True, True, False]})
    low, high = bootstrap_difference(pair_episodes(a, b), n_resamples=2000, seed=1)
    assert (low, high) == (pytest.approx(0.25), pytest.approx(0.75))


def test_bootstrap_is_seeded_and_bounded_by_the_cluster_differences():
    rng = np.random.default_rng(0)
    outcomes_a, outcomes_b, cluster_means = {}, {}, []
    for task in range(6):
        for seed in range(2):
            a = rng.random(10) < 0.3
            b = rng.random(10) < 0.6
            outcomes_a[(task, seed)], outcomes_b[(task, seed)] = list(a), list(b)
            cluster_means.append(b.mean() - a.mean())
    pairs = pair_episodes(_episodes("a", outcomes_a), _episodes("b", outcomes_b))
    low, high = bootstrap_difference(pairs, seed=5)
    assert (low, high) == bootstrap_difference(pairs, seed=5)
    point = (pairs["success_b"].mean() - pairs["success_a"].mean())
    assert min(cluster_means) <= low < point < high <= max(cluster_means)


# -------------------------------------------------------------------------- episodes needed


def _exact_mcnemar_power(n: int, p_only_a: float, p_only_b: float, alpha: float = 0.05) -> float:
    """Power of the two-sided exact McNemar test with n pairs, by summing over the number of
    discordant pairs and the split of them (scipy's binomial distribution)."""
    psi, share = p_only_a + p_only_b, p_only_b / (p_only_a + p_only_b)
    total = 0.0
    for d in range(1, n + 1):
        k = np.arange(d + 1)
        p = np.minimum(1.0, 2 * np.minimum(binom.cdf(k, d, 0.5), binom.sf(k - 1, d, 0.5)))
        total += binom.pmf(d, n, psi) * binom.pmf(k, d, share)[p < alpha].sum()
    return total


def test_pairs_needed_is_connors_formula_and_gives_the_stated_power():
    # psi = 0.2, delta = 0.1: (1.95996 sqrt(0.2) + 0.84162 sqrt(0.19))^2 / 0.01 = 154.6
    n = pairs_needed(5, 15, 100)
    assert n == 155
    assert 0.7 <= _exact_mcnemar_power(int(n), 0.05, 0.15) <= 0.9
    assert _exact_mcnemar_power(int(0.7 * n), 0.05, 0.15) < 0.7
    assert pairs_needed(5, 15, 100) == pairs_needed(15, 5, 100)  # either direction
    assert math.isinf(pairs_needed(4, 4, 50)) and math.isnan(pairs_needed(0, 0, 0))


# ---------------------------------------------------------------------------------- claims


def test_verdict_rule():
    assert verdict(0.05, 0.3, 0.01, +1) == SUPPORTED
    assert verdict(-0.3, -0.05, 0.01, -1) == SUPPORTED
    assert verdict(0.05, 0.3, 0.01, -1) == CONTRADICTED
    assert verdict(-0.05, 0.3, 0.01, +1) == UNRESOLVED  # interval holds 0
    assert verdict(0.05, 0.3, 0.2, +1) == UNRESOLVED  # McNemar not below 5%
    assert verdict(float("nan"), float("nan"), 1.0, +1) == NOT_RUN


def test_claims_table_on_a_grid_with_known_outcomes(tmp_path):
    tasks, seeds = range(4), (0, 1)

    def cell(name, successes):
        return _episodes(name, {(t, s): successes for t in tasks for s in seeds})

    episodes = pd.concat([
        cell("action", [True] * 2 + [False] * 8),
        cell("action+world", [True] * 8 + [False] * 2),  # claim 1: up in every task and seed
        cell("action_chunk", [True] * 9 + [False]),  # claim 2a: up, the paper says down
        # claim 2b: the same successes as action_chunk (no discordant pair)
        cell("action_chunk+mask", [True] * 9 + [False]),
        # claim 3: action+world_chunk+mask never ran
    ], ignore_index=True)
    # an errored episode did not run: it pairs with nothing (here one B would have won)
    errored = episodes.index[(episodes["cell"] == "action+world") & (episodes["trial"] == 5)
                             & (episodes["task_id"] == 0) & (episodes["train_seed"] == 0)]
    episodes.loc[errored, "is_error"] = True
    table = claims_table(episodes, n_resamples=2000).set_index("claim")
    assert list(table.index) == [c.key for c in CLAIMS]

    one = table.loc["1"]
    assert (one["pairs"], one["only_a"], one["only_b"]) == (79, 0, 47)
    assert one["success_a"] == pytest.approx(100 * 16 / 79)
    assert one["success_b"] == pytest.approx(100 * 63 / 79)
    assert one["difference"] == pytest.approx(100 * 47 / 79)
    assert one["p_pooled"] == pytest.approx(2 * 0.5**47)
    assert one["p_per_seed"] == f"seed 0: {2 * 0.5**23:.3g}; seed 1: {2 * 0.5**24:.3g}"
    assert 0 < one["diff_low"] <= one["difference"] <= one["diff_high"]
    assert one["verdict"] == SUPPORTED
    assert one["paper_difference"] == pytest.approx(67.2 - 62.8)

    two_a = table.loc["2a"]
    assert (two_a["only_a"], two_a["only_b"], two_a["difference"]) == (0, 56, pytest.approx(70))
    assert two_a["verdict"] == CONTRADICTED  # the paper has chunks below the action model
    two_b = table.loc["2b"]
    assert (two_b["only_a"], two_b["only_b"], two_b["p_pooled"]) == (0, 0, 1.0)
    assert two_b["verdict"] == UNRESOLVED and math.isinf(two_b["pairs_needed"])
    three = table.loc["3"]
    assert three["pairs"] == 0 and three["verdict"] == NOT_RUN
    assert three["paper_b"] == PAPER_LIBERO_AVERAGE["action+world_chunk+mask"]

    written = write_claims(table.reset_index(), tmp_path, n_resamples=2000)
    md = written["md"].read_text()
    assert md.count("## Claim ") == 4
    assert "## Claim 2a: action chunks without the attention mask hurt" in md
    assert "| contradicted" in md and "| supported" in md and "not resolved at this n" in md
    assert "2000 resamples" in md and "Connor 1987" in md and "62.8" in md
    # the summary: one row per claim, before the claims' own tables
    header, *rows_md = _table_rows(md[:md.index("## Claim 1")])
    assert [r[0] for r in rows_md] == ["1", "2a", "2b", "3"]
    assert dict(zip(header, rows_md[0], strict=True)) == {
        "claim": "1", "A -> B": "action -> action+world", "training seeds": "0,1",
        "paired episodes": "79", "success A / B %": "20.3 / 79.7",
        "B - A (points) [95%]": f"+59.5 [{one['diff_low']:.1f}, {one['diff_high']:.1f}]",
        "McNemar p": f"{2 * 0.5**47:.3g}", "paper's difference": "+4.4", "verdict": SUPPORTED,
        "pairs to resolve": str(int(one["pairs_needed"]))}
    assert rows_md[2][-1] == "no difference measured"
    assert rows_md[3][2:6] == ["-", "0", "- / -", "-"] and rows_md[3][-2] == NOT_RUN
    with written["csv"].open() as stream:
        rows = list(csv.DictReader(stream))
    assert [r["claim"] for r in rows] == ["1", "2a", "2b", "3"]
    assert rows[0]["verdict"] == SUPPORTED and rows[0]["pairs"] == "79"


def _table_rows(markdown: str) -> list[list[str]]:
    """The rows of the markdown tables in `markdown` as lists of stripped cells (no rulers)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in markdown.splitlines() if line.lstrip().startswith("|")]
    return [row for row in rows if not all(set(cell) <= set(":-") for cell in row)]


@pytest.mark.parametrize("grid_name", ["ablation_libero_goal",
                                       "ablation_libero_goal_constrained"])
def test_readme_claims_table_is_what_the_committed_grid_gives(grid_name):
    """README's claims tables are the summaries of the example grids' committed runs (the
    primary grid's, and the constrained one's once it has runs), recomputed here from their
    episodes, so they cannot drift from them."""
    root = Path(__file__).resolve().parents[1]
    grid = root / "results" / "examples" / grid_name
    if grid_name != "ablation_libero_goal" and not (grid / "runs").is_dir():
        pytest.skip(f"{grid_name} has no committed runs yet")
    expected = _table_rows(format_summary(claims_table(recorded_episodes(grid))))
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## The paper's claims"):]
    shown = _table_rows(section[:section.index("\n## ", 1)])
    assert len(expected) == 1 + len(CLAIMS) and expected[1][1] == "action -> action+world"
    starts = [i for i in range(len(shown)) if shown[i:i + len(expected)] == expected]
    assert starts, f"README's claims section has no table equal to {grid_name}'s summary"


# ----------------------------------------------------------------------------- end to end


def test_ablation_command_trains_two_seeds_and_writes_the_claims(tmp_path, monkeypatch,
                                                                 capsys):
    """`worldvla-bench ablation` on the two cells of claim 1 with two training seeds: tiny
    models (2 VQ steps, shared; 2 transformer steps), one 4-step LIBERO episode per run. Each
    (cell, seed) is its own run directory that `compare` reads; the claims table pairs their
    episodes; a second invocation resumes without training or running anything again."""
    import torch

    from worldvla_bench.cli import main
    from worldvla_bench.compare import compare_runs
    from worldvla_bench.integrations.worldvla.training import (
        load_checkpoint,
        make_synthetic_demos,
        read_checkpoint,
    )
    from worldvla_bench.manifest import read_manifest
    from worldvla_bench.run_dir import read_episodes

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    make_synthetic_demos(Path("demos/turn_on_the_stove_demo.hdf5"), n_demos=2, length=8,
                         instruction="turn on the stove")
    make_synthetic_demos(Path("noisy/turn_on_the_stove_demo.hdf5"), n_demos=1, length=8,
                         instruction="turn on the stove", seed=5)
    argv = ["ablation", "--data", "demos", "--world-data", "noisy", "--config", "tiny",
            "--vq-steps", "2", "--steps", "2", "--batch-size", "4", "--vq-batch-size", "8",
            "--image-loss-weight", "1", "--chunk-size", "2", "--threads", "1",
            "--train-seeds", "0,1", "--cells", "action,action+world",
            "--suite", "libero_goal", "--tasks", "0", "--first-trial", "40", "--trials", "1",
            "--image-size", "64", "--max-steps", "4", "--workers", "1", "--no-progress",
            "--out", "abl"]
    assert main(argv) == 0
    out = Path("abl")
    for cell in ("action", "action_plus_world"):
        for seed in (0, 1):
            run = out / "runs" / cell / f"seed{seed}"
            checkpoint = out / "train" / cell / f"seed{seed}" / "model.pt"  # the float16 export
            _, meta = load_checkpoint(checkpoint)
            args = meta["train_args"]
            assert args["seed"] == seed and args["image_loss_weight"] == 1.0
            assert args["vq_from"] == str(out / "data" / "vq.pt")
            assert args["tokens"] == str(out / "data" / "tokens.npz") and args["data"] == []
            world = cell == "action_plus_world"
            assert args["world_model_weight"] == (1.0 if world else 0.0)
            assert read_checkpoint(checkpoint)["data"]["world_episodes"] == (1 if world else 0)
            assert meta["exported"]["half"] and meta["step"] == 2
            manifest = read_manifest(run)
            assert manifest["config"]["policy_kwargs"]["checkpoint"] == str(checkpoint)
            assert manifest["git_revision"]
    with (out / "ablation.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["cell"], r["train_seed"]) for r in rows] == [
        ("action", "0"), ("action", "1"), ("action", "all"),
        ("action+world", "0"), ("action+world", "1"), ("action+world", "all")]
    assert [r["trials"] for r in rows] == ["1", "1", "2", "1", "1", "2"]
    assert all(len(r["checkpoint_sha256"].split(";")[0]) == 64 for r in rows)
    # time: each training's own (elapsed_s, kept by its export), the episodes' summed; pooled
    # rows add their seeds'
    for row in rows:
        if row["train_seed"] != "all":
            exported = read_checkpoint(row["checkpoint"])
            assert float(row["train_min"]) == pytest.approx(exported["elapsed_s"] / 60)
            walls = [r["wall_time_s"] for r in read_episodes(Path(row["run"]))]
            assert float(row["episodes_min"]) == pytest.approx(sum(walls) / 60)
    for first, second, pooled in (rows[0:3], rows[3:6]):
        for key in ("train_min", "episodes_min"):
            assert float(pooled[key]) == pytest.approx(float(first[key]) + float(second[key]))
    assert "Time so far: " in (out / "ablation.md").read_text()
    with (out / "claims.csv").open() as stream:
        claims = {r["claim"]: r for r in csv.DictReader(stream)}
    assert claims["1"]["pairs"] == "2" and claims["1"]["seeds"] == "0,1"
    assert claims["2b"]["verdict"] == NOT_RUN
    compared = compare_runs(out / "runs" / "action" / "seed0",
                            out / "runs" / "action_plus_world" / "seed1")["table"]
    assert list(compared["test"]) == ["mcnemar", "mcnemar"]  # task 0 and overall: paired
    # resumes: nothing left to train or run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    episodes = (out / "runs" / "action" / "seed1" / "episodes.jsonl").read_text()
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps
    assert (out / "runs" / "action" / "seed1" / "episodes.jsonl").read_text() == episodes
    # the same exports evaluated again under another policy argument, into another --out:
    # nothing trained, every run's policy the grid's export with the argument added
    again = ["ablation", "--models-from", "abl", "--policy-arg", "constrained=true",
             "--train-seeds", "0", "--cells", "action,action+world", "--suite", "libero_goal",
             "--tasks", "0", "--first-trial", "40", "--trials", "1", "--image-size", "64",
             "--max-steps", "4", "--workers", "1", "--no-progress", "--out", "abl_constrained"]
    assert main(again) == 0
    assert not Path("abl_constrained/train").exists()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps
    for cell, mask in (("action", False), ("action_plus_world", False)):
        manifest = read_manifest(Path("abl_constrained/runs") / cell / "seed0")
        assert manifest["config"]["policy_kwargs"] == {
            "constrained": True, "action_mask": mask,
            "checkpoint": str(out / "train" / cell / "seed0" / "model.pt")}
    with Path("abl_constrained/claims.csv").open() as stream:
        assert next(csv.DictReader(stream))["pairs"] == "1"
    for table in ("ablation.md", "claims.md"):  # the tables say what their policies shared
        title = Path("abl_constrained", table).read_text().splitlines()[0]
        assert "(every cell's policy with constrained=True)" in title
    assert "constrained" not in (out / "ablation.md").read_text().splitlines()[0]
    # its time line names the grid that did the training, which this one did not
    assert "nothing trained here: the models are abl's" in Path(
        "abl_constrained", "ablation.md").read_text()
    assert "nothing trained here" not in (out / "ablation.md").read_text()
    # carried on elsewhere: only what the repository keeps (data/, the exports, the runs), no
    # demos; a lost run is run again from its export, nothing is trained
    import shutil

    for kept_out in ("demos", "noisy", "abl/vq"):
        shutil.rmtree(kept_out)
    for path in out.glob("train/*/*/*"):
        if path.name != "model.pt":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(out / "runs" / "action" / "seed1")
    exports = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == exports
    assert len((out / "runs" / "action" / "seed1" / "episodes.jsonl").read_text().splitlines()) == 1
    # other demos under the same --out are refused, not mixed in
    make_synthetic_demos(Path("demos/turn_on_the_stove_demo.hdf5"), n_demos=2, length=8,
                         instruction="turn on the stove")
    make_synthetic_demos(Path("demos/open_the_drawer_demo.hdf5"), n_demos=1, length=8,
                         instruction="open the drawer")
    shutil.rmtree(out / "train" / "action" / "seed1")
    capsys.readouterr()
    assert main(argv) != 0
    assert "made from other demos" in capsys.readouterr().err


def test_time_line_counts_only_the_training_of_the_grids_own_models(tmp_path, monkeypatch):
    """ablation.md's time line: the training of the models under <out>/train/ is the grid's
    time; another grid's exports (--models-from) and --checkpoint files are named with their
    training time, not counted; pooled rows are left out; paths compare as files (the grid's
    --out relative, its checkpoint absolute)."""
    import pandas as pd

    from worldvla_bench.integrations.worldvla.ablation import _time_line

    monkeypatch.chdir(tmp_path)
    own = str(tmp_path / "grid" / "train" / "action" / "seed0" / "model.pt")
    other = str(Path("other") / "train" / "action" / "seed1" / "model.pt")
    table = pd.DataFrame({
        "train_seed": ["0", "1", "0", "all"],
        "checkpoint": [own, other, "mine.pt", f"{own};{other}"],
        "train_min": [60.0, 120.0, float("nan"), 180.0],
        "episodes_min": [30.0, 30.0, 60.0, 60.0],
    })
    assert _time_line(table, "grid") == (
        "\nTime so far: 1.0 h of training (1 of 1 trainings recorded), 2.0 h of episodes "
        "(summed over the workers); not counted: 2 of the 3 models are from other, mine.pt, "
        "2.0 h of training (1 of 2 trainings recorded).\n")
    assert _time_line(table.iloc[[0]], "grid") == (
        "\nTime so far: 1.0 h of training (1 of 1 trainings recorded), 0.5 h of episodes "
        "(summed over the workers).\n")
    assert _time_line(table.iloc[[1]], "grid") == (
        "\nTime so far: 0.5 h of episodes (summed over the workers); nothing trained here: "
        "the models are other's, 2.0 h of training (1 of 1 trainings recorded).\n")
    assert "the models are from mine.pt, 0.0 h of training (0 of 1" in _time_line(
        table.iloc[[2]], "grid")
    assert _time_line(table.iloc[[1]], "other") == _time_line(
        table.iloc[[1]].assign(checkpoint=own), "grid")  # the grid's own under any --out
    assert _time_line(table.iloc[[]], "grid") == ""


def test_models_from_takes_another_grids_exports_and_names_what_it_lacks(tmp_path, capsys):
    """--models-from: each (cell, seed) takes GRID/train/<cell>/seed<k>/model.pt, --checkpoint
    first; what GRID has not trained is listed, not trained; GRID as --out, a directory that is
    no grid's, a grid with none of the selected exports, and a policy argument a cell sets are
    refused before anything runs."""
    from worldvla_bench.integrations.worldvla.ablation import (
        CELLS,
        AblationConfig,
        _checkpoints,
        run_ablation,
    )
    from worldvla_bench.protocol import Protocol

    grid = tmp_path / "grid"
    for slug, seed in (("action", 0), ("action", 1), ("action_plus_world", 1)):
        (grid / "train" / slug / f"seed{seed}").mkdir(parents=True)
        (grid / "train" / slug / f"seed{seed}" / "model.pt").write_bytes(b"")
    protocol = Protocol(suite="libero_goal")
    config = AblationConfig(data=[], protocol=protocol, out=str(tmp_path / "out"),
                            models_from=str(grid), checkpoints={("action", 1): "mine.pt"})
    cells = [CELLS["action"], CELLS["action+world"]]
    taken, missing = _checkpoints(config, cells, [0, 1])
    assert taken == {("action", 0): str(grid / "train/action/seed0/model.pt"),
                     ("action", 1): "mine.pt",
                     ("action+world", 1): str(grid / "train/action_plus_world/seed1/model.pt")}
    assert missing == ["action+world seed 0"]
    with pytest.raises(BenchError, match="is the grid --models-from reads"):
        run_ablation(replace(config, out=str(grid)))
    with pytest.raises(BenchError, match="no train/ directory"):
        run_ablation(replace(config, models_from=str(tmp_path)))
    with pytest.raises(BenchError, match="nothing to evaluate"):
        run_ablation(replace(config, cells=["action_chunk"], checkpoints={}))
    assert "has no export yet of: action_chunk seed 0, action_chunk seed 1" in (
        capsys.readouterr().err)
    with pytest.raises(BenchError, match="'checkpoint' is set by each cell"):
        run_ablation(replace(config, protocol=replace(
            protocol, policy_kwargs={"checkpoint": "x.pt"})))
    assert not (tmp_path / "out").exists()


def test_checkpoints_and_training_seeds_are_parsed_per_seed():
    from worldvla_bench.integrations.worldvla.ablation import parse_checkpoints, parse_seeds

    assert parse_seeds("0,1") == [0, 1] and parse_seeds([3]) == [3]
    for bad in ("", "0,0", "-1", "a"):
        with pytest.raises(BenchError, match="training seeds"):
            parse_seeds(bad)
    assert parse_checkpoints(["action@1=b.pt", "action@0=a.pt"], [0, 1]) == {
        ("action", 1): "b.pt", ("action", 0): "a.pt"}
    assert parse_checkpoints(["action=a.pt"], [3]) == {("action", 3): "a.pt"}
    with pytest.raises(BenchError, match="name the training seed"):
        parse_checkpoints(["action=a.pt"], [0, 1])
    with pytest.raises(BenchError, match="not one of the training seeds"):
        parse_checkpoints(["action@2=a.pt"], [0, 1])
    with pytest.raises(BenchError, match="CELL@SEED=PATH"):
        parse_checkpoints(["action@x=a.pt"], [0, 1])


def _fake_run(run_dir: Path, outcomes: list[bool]) -> Path:
    from conftest import write_fake_run

    return write_fake_run(run_dir, outcomes, suite="libero_goal", max_steps=300, first_seed=100)


def test_grid_table_pools_a_cells_seeds_and_tags_episodes_with_the_training_seed(tmp_path):
    from worldvla_bench.integrations.worldvla.ablation import (
        CELLS,
        CellRun,
        ablation_table,
        grid_episodes,
        write_tables,
    )

    runs = [CellRun(CELLS["action"], _fake_run(tmp_path / "a0", [True, False, False, False]), 1,
                    seed=0),
            CellRun(CELLS["action"], _fake_run(tmp_path / "a1", [True, True, True, False]), 1,
                    seed=1),
            CellRun(CELLS["action+world"], _fake_run(tmp_path / "w0", [True] * 4), 1, seed=0),
            CellRun(CELLS["action+world"], tmp_path / "missing", 1, seed=1)]
    table = ablation_table(runs)
    assert [(r.cell, r.train_seed, r.trials, r.successes) for r in table.itertuples()] == [
        ("action", "0", 4, 1), ("action", "1", 4, 3), ("action", "all", 8, 4),
        ("action+world", "0", 4, 4), ("action+world", "1", 0, 0), ("action+world", "all", 4, 4)]
    assert table["success_rate"].iloc[2] == 50.0
    episodes = grid_episodes(runs)
    assert sorted(set(zip(episodes["cell"], episodes["train_seed"], strict=True))) == [
        ("action", 0), ("action", 1), ("action+world", 0)]
    assert list(episodes["seed"][:4]) == [100, 101, 102, 103]  # the episodes' own seeds
    written = write_tables(runs, tmp_path / "out")
    claim = written["claims"].set_index("claim").loc["1"]
    # seed 0 only: the other seed of action+world has no episodes; trials 1-3 only B succeeded
    assert (claim["pairs"], claim["only_a"], claim["only_b"], claim["seeds"]) == (4, 0, 3, "0")
    assert written["claims_md"].exists() and written["md"].exists()


def test_claims_summary_command_prints_the_readme_table_and_refuses_a_non_grid(tmp_path,
                                                                               capsys):
    from worldvla_bench.integrations.worldvla.ablation import summary_main as main

    grid = Path(__file__).resolve().parents[1] / "results" / "examples" / "ablation_libero_goal"
    assert main([str(grid)]) == 0
    printed = _table_rows(capsys.readouterr().out)
    assert printed == _table_rows(format_summary(claims_table(recorded_episodes(grid))))
    with pytest.raises(SystemExit) as refused:
        main([str(tmp_path)])
    assert refused.value.code == 2 and "no runs/ directory" in capsys.readouterr().err

"""The HTML report: escaping and content on synthetic runs with known answers, and a real
browser (Debian's headless chromium) on the page of a real LIBERO run: the rendered DOM shows
report.csv's success rates, and the episode video loads in its <video> element."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
from test_report import make_run

from worldvla_bench.cli import main
from worldvla_bench.html_report import write_html_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars", "--mute-audio"]


class PageFacts(HTMLParser):
    """What the tests read off a page: success-rate cells per (run, task), grid cells, videos."""

    def __init__(self) -> None:
        super().__init__()
        self.run: str | None = None
        self.task: str | None = None
        self.in_rate = False
        self.rates: dict[tuple[str, str], str] = {}
        self.cells: list[dict[str, str]] = []
        self.videos: list[dict[str, str]] = []
        self.scripts_with_src: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        classes = attrs.get("class", "").split()
        if tag == "section" and "data-run" in attrs:
            self.run = attrs["data-run"]
        elif tag == "tr":
            self.task = attrs.get("data-task")
        elif tag == "td" and "rate" in classes:
            self.in_rate = True
        elif tag == "td" and "cell" in classes:
            self.cells.append({"run": self.run, "outcome": classes[-1]})
        elif tag == "a" and "data-player" in attrs:
            self.cells[-1]["href"] = attrs["href"]
        elif tag == "video":
            self.videos.append(attrs)
        elif tag == "script" and attrs.get("src"):
            self.scripts_with_src.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "td":
            self.in_rate = False

    def handle_data(self, data):
        if self.in_rate and data.strip():
            self.rates[(self.run, self.task)] = data.strip()


def facts(html: str) -> PageFacts:
    parser = PageFacts()
    parser.feed(html)
    return parser


def expected_rates(run_dir: Path) -> dict[str, str]:
    """task_id -> success % with one decimal, as report.csv holds it."""
    csv = pd.read_csv(run_dir / "report.csv", dtype={"task_id": str})
    return {row.task_id: f"{row.success_rate:.1f}" for row in csv.itertuples()}


def test_page_escapes_everything_from_a_run(tmp_path):
    run = make_run(tmp_path / "r", {0: [True, False]}, errors=((0, 1),))
    episodes = (run / "episodes.jsonl").read_text()
    hostile = '<script>alert(1)</script> & "quoted"'
    (run / "episodes.jsonl").write_text(episodes.replace("task_0", hostile.replace('"', '\\"'))
                                        .replace("PolicyOutputError: x", "<img src=x onerror=1>"))
    html = write_html_report([run], tmp_path / "page").read_text()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quoted&#34;" in html
    assert "&lt;img src=x onerror=1&gt;" in html  # the error, in its cell's tooltip


def test_page_of_two_runs_holds_grid_rates_and_the_paired_comparison(tmp_path):
    a = make_run(tmp_path / "a", {0: [True] * 10, 1: [True, False, True]})
    b = make_run(tmp_path / "b", {0: [False] * 10, 1: [True, False, True]}, max_steps=300,
                 errors=((1, 2),))
    for run in (a, b):
        assert main(["report", str(run)]) == 0
    html = write_html_report([a, b], tmp_path / "page").read_text()
    page = facts(html)
    for run in (a, b):
        for task, rate in expected_rates(run).items():
            assert page.rates[(run.name, task)] == rate
    outcomes = [c["outcome"] for c in page.cells if c["run"] == "b"]
    assert outcomes.count("failure") == 11 and outcomes.count("error") == 1
    assert outcomes.count("success") == 1 and outcomes.count("missing") == 7  # task 1: 3 of 10
    # 10 of 10 against 0 of 10 on the same trials: exact McNemar p = 2 * 0.5**10
    assert "mcnemar" in html and "0.00195" in html and "-100.0" in html
    assert "protocol.max_steps" in html and "moves-yes" in html
    assert not page.scripts_with_src and not page.links  # nothing fetched from elsewhere
    assert html.count("data:image/png;base64,") == 1



def test_a_task_whose_episodes_all_ended_in_an_error_shows_n_a_on_the_page(tmp_path):
    run = make_run(tmp_path / "r", {0: [True, False], 1: [False, False]},
                   errors=((1, 0), (1, 1)))
    html = write_html_report([run], tmp_path / "page").read_text()
    page = facts(html)
    assert page.rates[("r", "0")] == "50.0" and page.rates[("r", "1")] == "n/a"
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # the chart's bytes
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert [c["outcome"] for c in page.cells].count("error") == 2

def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed (make setup installs it): "
                    "no real-browser test")
    return found


def _browser(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180, check=True)


def test_chromium_renders_the_page_of_a_real_run(recorded_run: Path, tmp_path):
    assert main(["report", str(recorded_run), "--html", str(tmp_path / "page")]) == 0
    index = tmp_path / "page" / "index.html"
    # virtual time lets the page's script see the video's metadata before the DOM is dumped
    dom = _browser(["--virtual-time-budget=10000", "--dump-dom", index.as_uri()], tmp_path).stdout
    page = facts(dom)
    expected = expected_rates(recorded_run)
    assert {task: page.rates[(recorded_run.name, task)] for task in expected} == expected
    records = pd.read_json(recorded_run / "episodes.jsonl", lines=True)
    assert len(page.cells) == len(records)
    assert all(c.get("href") for c in page.cells)  # the fixture records every episode's video
    (video,) = page.videos
    source = tmp_path / "page" / unquote(video["src"])
    assert source.is_file() and source.stat().st_size > 0
    assert any(source.read_bytes() == (recorded_run / v).read_bytes() for v in records["video"])
    # the browser decoded the video's header: the H.264 mp4 plays here
    assert video.get("data-state") == "loaded", video
    assert float(video["data-duration"]) > 0


def test_page_links_only_videos_the_run_holds(tmp_path, capsys):
    run = make_run(tmp_path / "r", {0: [True, False]})
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"not the run's")
    (run / "videos").mkdir()
    (run / "videos" / "ok.mp4").write_bytes(b"the run's")
    lines = (run / "episodes.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    records[0]["video"], records[1]["video"] = "../secret.mp4", "videos/ok.mp4"
    (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = facts(write_html_report([run], tmp_path / "page").read_text())
    assert [c.get("href") for c in page.cells] == [None, "runs/r/videos/ok.mp4"]
    assert not (tmp_path / "page" / "runs" / "r" / "videos" / "secret.mp4").exists()
    (tmp_path / "taken").write_text("")
    assert main(["report", str(run), "--html", str(tmp_path / "taken")]) == 2
    assert "is a file" in capsys.readouterr().err

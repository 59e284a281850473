"""The shape of the package: no import cycles, a core that knows no integration, one registry
that installed packages extend through entry points, and an install that carries its data."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from worldvla_bench.errors import BenchError, UnknownChoiceError
from worldvla_bench.registry import Registry

REPO = Path(__file__).resolve().parent.parent
#: Modules of the WorldVLA integration: the core may not import any of them.
INTEGRATION = ("worldvla_bench.integrations",)


def _module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (policies/ installs as
    worldvla_bench.policies)."""
    files = {}
    for base, prefix in ((REPO / "worldvla_bench", ("worldvla_bench",)),
                         (REPO / "policies", ("worldvla_bench", "policies"))):
        for path in base.rglob("*.py"):
            parts = [*prefix, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


def _imports(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (deferred imports too)."""
    graph = {}
    for name, path in files.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            found |= {c for c in candidates if c in files and c != name}
        graph[name] = found
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_among_the_package_modules():
    graph = _imports(_module_files())
    assert len(graph) > 40  # the walk saw the package
    assert _cycles(graph) == []


def test_the_core_imports_nothing_of_the_worldvla_integration():
    graph = _imports(_module_files())

    def integration(name: str) -> bool:
        return any(name == m or name.startswith(m + ".") for m in INTEGRATION)

    leaks = {name: sorted(d for d in deps if integration(d))
             for name, deps in graph.items() if not integration(name)}
    assert {name: deps for name, deps in leaks.items() if deps} == {}


def test_unknown_names_suggest_the_closest_ones():
    from worldvla_bench.policy import make_policy

    with pytest.raises(UnknownChoiceError, match="did you mean 'expert'"):
        make_policy("exprt")
    registry: Registry[int] = Registry("thing")
    registry.register("one", 1)
    with pytest.raises(BenchError, match="already registered"):
        registry.register("one", 2)
    assert registry.load("one") == 1 and registry["one"] == 1


def test_worldvla_registers_through_entry_points_like_any_package():
    from importlib.metadata import entry_points

    from worldvla_bench.policy import POLICIES
    from worldvla_bench.worldmodel.models import WORLD_MODELS

    groups = ("worldvla_bench.policies", "worldvla_bench.world_models", "worldvla_bench.commands")
    points = {(p.group, p.name) for group in groups for p in entry_points(group=group)}
    assert {("worldvla_bench.policies", "worldvla"), ("worldvla_bench.policies", "worldvla_hf"),
            ("worldvla_bench.world_models", "worldvla"), ("worldvla_bench.commands", "train"),
            ("worldvla_bench.commands", "ablation")} <= points
    assert POLICIES.entry("worldvla").source == "worldvla-bench"  # from the distribution
    assert WORLD_MODELS.entry("worldvla").source == "worldvla-bench"
    assert POLICIES.entry("expert").source == "worldvla_bench"  # the core's own


PLUGIN = '''
import numpy as np
from worldvla_bench.policy import Policy

class HoldPolicy(Policy):
    """Closes the gripper and holds still, {K} steps per chunk."""
    def act(self, observation):
        chunk = np.zeros(({K}, 7))
        chunk[:, 6] = 1.0
        return chunk
'''


def _plugin_package(root: Path) -> Path:
    """A package outside the repository, 'installed' by its dist-info on the path: it registers
    a policy and a command through entry points, as `pip install` would write them."""
    (root / "hold_plugin").mkdir(parents=True)
    (root / "hold_plugin" / "__init__.py").write_text(PLUGIN.replace("{K}", "3"))
    (root / "hold_plugin" / "cli.py").write_text(
        "from worldvla_bench.registry import Command\n"
        "def add(sub):\n"
        "    sub.add_parser('hold-hello').set_defaults(func=lambda args: print('hello') or 0)\n"
        "HELLO = Command(help='say hello', add_parser='hold_plugin.cli:add')\n")
    info = root / "hold_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hold-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[worldvla_bench.policies]\nhold = hold_plugin:HoldPolicy\n\n"
        "[worldvla_bench.commands]\nhold-hello = hold_plugin.cli:HELLO\n")
    return root


@pytest.mark.slow
def test_a_third_party_policy_and_command_through_entry_points(tmp_path):
    site = _plugin_package(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ["PYTHONPATH"]])}
    command = [sys.executable, "-m", "worldvla_bench"]
    listed = subprocess.run([*command, "policies"], env=env, capture_output=True, text=True,
                            check=True).stdout
    assert "hold_plugin:HoldPolicy" in listed
    hello = subprocess.run([*command, "hold-hello"], env=env, capture_output=True, text=True)
    assert hello.returncode == 0 and hello.stdout.strip() == "hello"
    run = tmp_path / "run"
    done = subprocess.run(
        [*command, "eval", "--suite", "libero_spatial", "--policy", "hold", "--tasks", "0",
         "--trials", "1", "--max-steps", "6", "--image-size", "64", "--workers", "1",
         "--run", str(run), "--no-progress"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    record = json.loads((run / "episodes.jsonl").read_text().splitlines()[0])
    assert record["policy"] == "hold" and record["error"] is None
    assert record["steps"] == 6 and record["policy_calls"] == 2  # chunks of 3, open loop


def test_a_wheel_installs_every_suite_and_builtin_policy_inside_the_package(tmp_path):
    """`pip install .` (not editable): the wheel carries tasks/ and policies/ inside
    worldvla_bench, and no top-level `policies` package, and every data file (panels, html
    templates, the results schema, the shipped weights), built without setuptools' warning that
    a data directory "would be ignored"; installed alone on the path, it lists every suite and
    every built-in policy."""
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ behind
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "results", "build", "*.egg-info", "__pycache__", ".*_cache"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                           check=True, capture_output=True, text=True)
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    wheel = next((tmp_path / "dist").glob("worldvla_bench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("policies/")]
    package = REPO / "worldvla_bench"
    data = {f"worldvla_bench/suite_files/{p.relative_to(REPO / 'tasks').as_posix()}"
            for p in (REPO / "tasks").rglob("*.yaml")}
    data |= {p.relative_to(REPO).as_posix() for folder in (
        package / "html", package / "schemas", package / "integrations/worldvla/weights")
        for p in folder.iterdir() if p.is_file()}
    assert any("/panels/" in n for n in data) and any(n.endswith(".pt") for n in data)
    assert data <= set(names), sorted(data - set(names))
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"worldvla_bench"}
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # -S: no site-packages processing, so no editable finder and no repository on the path;
    # the dependencies come from this interpreter's site-packages, after the unpacked wheel
    code = ("import sys; sys.path[:0] = sys.argv[1:]; "
            "import worldvla_bench; assert worldvla_bench.__file__.startswith(sys.argv[1]); "
            "from worldvla_bench.cli import main; main(['suites']); main(['policies'])")
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    shown = subprocess.run([sys.executable, "-S", "-c", code, str(site), *site_packages],
                           cwd=tmp_path, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for yaml_file in (REPO / "tasks").glob("*.yaml"):
        assert yaml_file.stem in shown.stdout
    for policy in ("expert", "noop", "random", "remote", "replay"):
        assert f"worldvla_bench.policies.{policy}:" in shown.stdout
    for target in ("integrations.worldvla.policy:", "integrations.worldvla.hf_policy:"):
        assert f"worldvla_bench.{target}" in shown.stdout


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "worldvla_bench", "suites"], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0 and "libero_spatial" in done.stdout

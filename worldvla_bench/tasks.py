"""Suite definitions: `tasks/*.yaml` files parsed into `SuiteSpec`, and task/trial selections."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from worldvla_bench.errors import BenchError, UnknownChoiceError

_PACKAGE = Path(__file__).resolve().parent
#: The suite files: installed inside the package (`suite_files/`, see setup.py), or the
#: repository's `tasks/` folder in a source checkout or an editable install.
DEFAULT_TASKS_DIR = next((path for path in (_PACKAGE / "suite_files", _PACKAGE.parent / "tasks")
                          if path.is_dir()), _PACKAGE.parent / "tasks")


#: where a task's language instruction comes from (see `SuiteSpec`)
INSTRUCTION_SOURCES = ("registry", "bddl")


def tasks_dir() -> Path:
    """Directory of suite yaml files: `$WORLDVLA_TASKS_DIR`, else the installed suite files."""
    return Path(os.environ.get("WORLDVLA_TASKS_DIR", DEFAULT_TASKS_DIR))


@dataclass(frozen=True)
class SuiteSpec:
    """One benchmark suite and its evaluation protocol.

    `max_steps` counts policy steps after the `wait_steps` no-op steps; trial i of a task starts
    from the suite's init state i. Images are square, `image_size` pixels, upright.
    `instruction_source` says where a task's instruction comes from: `registry` (LIBERO's
    benchmark registry, `task.language`, what OpenVLA's, openpi's and WorldVLA's scripts pass) or
    `bddl` (the task file's `(:language ...)`, as the env reports it): LIBERO-PRO's language and
    task perturbations change only the BDDL file, the registry keeps the unperturbed instruction.
    """

    name: str
    libero_benchmark: str
    max_steps: int
    wait_steps: int = 10
    wait_action: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    trials_per_task: int = 50
    cameras: tuple[str, ...] = ("agentview", "robot0_eye_in_hand")
    image_size: int = 256
    control_freq: int = 20
    description: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    instruction_source: str = "registry"

    def to_dict(self) -> dict:
        """All fields; `instruction_source` only when not the default, so that the suite recorded
        in manifests written before it existed still equals the suite (resume compares them)."""
        data = asdict(self)
        if data["instruction_source"] == "registry":
            del data["instruction_source"]
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> SuiteSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise BenchError(f"{source}: unknown keys {unknown}; valid: {sorted(known)}")
        missing = [k for k in ("name", "libero_benchmark", "max_steps") if k not in data]
        if missing:
            raise BenchError(f"{source}: missing required keys {missing}")
        for key in ("max_steps", "wait_steps", "trials_per_task", "image_size", "control_freq"):
            if key in data and (isinstance(data[key], bool) or not isinstance(data[key], int)):
                raise BenchError(f"{source}: {key} must be an integer, got {data[key]!r}")
        values = dict(data)
        for key in ("wait_action", "cameras", "aliases"):
            if key in values:
                values[key] = tuple(values[key])
        spec = cls(**values)
        if len(spec.wait_action) != 7:
            raise BenchError(f"{source}: wait_action must have 7 values, got {spec.wait_action}")
        for key in ("max_steps", "trials_per_task", "image_size"):
            if int(getattr(spec, key)) <= 0:
                raise BenchError(f"{source}: {key} must be positive, got {getattr(spec, key)}")
        if spec.instruction_source not in INSTRUCTION_SOURCES:
            raise UnknownChoiceError(f"{source}: instruction_source", spec.instruction_source,
                                     list(INSTRUCTION_SOURCES))
        if spec.wait_steps < 0:
            raise BenchError(f"{source}: wait_steps must be >= 0, got {spec.wait_steps}")
        return spec


def _load_all(directory: Path | None = None) -> tuple[dict[str, SuiteSpec], dict[Path, str]]:
    """The suites of the suite directory, and the files that could not be read as one (each
    with its one-line error): a broken file breaks only itself."""
    directory = directory or tasks_dir()
    if not directory.is_dir():
        raise BenchError(f"suite directory {directory} does not exist (set WORLDVLA_TASKS_DIR)")
    suites: dict[str, SuiteSpec] = {}
    broken: dict[Path, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            spec = read_suite_file(path)
        except BenchError as error:
            broken[path] = str(error)
            continue
        suites[spec.name] = spec
    return suites, broken


def read_suite_file(path: Path) -> SuiteSpec:
    """One suite file as a `SuiteSpec`; `BenchError` in one line naming the file otherwise."""
    try:
        with path.open(encoding="utf-8") as stream:
            data = yaml.safe_load(stream) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise BenchError(f"{path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BenchError(f"{path}: cannot read: {error}") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: expected a mapping of suite fields, got a "
                         f"{type(data).__name__}")
    return SuiteSpec.from_dict(data, source=str(path))


def available_suites(directory: Path | None = None) -> list[str]:
    """Names of all suites defined in the suite directory (files that cannot be read aside)."""
    return sorted(_load_all(directory)[0])


def unreadable_suite_files(directory: Path | None = None) -> dict[Path, str]:
    """The suite files that cannot be read, each with its one-line error."""
    return _load_all(directory)[1]


def load_suite(name: str, directory: Path | None = None) -> SuiteSpec:
    """The suite called `name` (or one of its aliases); a clear error lists the valid names, or
    says why the file that would define it cannot be read."""
    suites, broken = _load_all(directory)
    if name in suites:
        return suites[name]
    for spec in suites.values():
        if name in spec.aliases:
            return spec
    for path, message in broken.items():
        if path.stem == name:
            raise BenchError(message)
    if broken:
        first = next(iter(broken.values()))
        raise BenchError(f"unknown suite {name!r} among the readable suite files; "
                         f"{len(broken)} cannot be read (it may be in one): {first}")
    raise UnknownChoiceError("suite", name, sorted(suites))


def parse_index_list(text: str | None, upper: int, kind: str) -> list[int]:
    """Parse '0,3,5-7' into sorted unique ints in [0, upper); None or '' or 'all' means all."""
    if text is None or str(text).strip() in ("", "all"):
        return list(range(upper))
    chosen: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                if lo > hi:
                    raise BenchError(f"bad {kind} list {text!r}: the range {part!r} is empty "
                                     f"(write it low-high, e.g. '{hi}-{lo}')")
                values = range(lo, hi + 1)
            else:
                values = range(int(part), int(part) + 1)
        except ValueError:
            raise BenchError(f"bad {kind} list {text!r}: use e.g. '0,3,5-7'") from None
        for value in values:
            if not 0 <= value < upper:
                raise UnknownChoiceError(kind, value, f"0..{upper - 1}")
            chosen.add(value)
    return sorted(chosen)

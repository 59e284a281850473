"""One small registry for every kind of plugin: policies, world models, commands, profiles.

A registry maps names to targets. A target is either an object or a lazy `"package.module:attr"`
string, imported only when the name is first used, so listing names costs no imports. Names come
from three places, later ones never silently replacing earlier ones:

1. the core's own `register(...)` calls (built-ins);
2. Python entry points of the registry's group (for example `worldvla_bench.policies`), which is
   how an installed package, WorldVLA's integration included, adds its plugins without editing
   ours (`[project.entry-points."worldvla_bench.policies"] mine = "mypkg.policy:MyPolicy"`);
3. any `"package.module:attr"` passed where a name is expected, used as is.

An unknown name raises `UnknownChoiceError` with the closest names ("did you mean ...").
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from worldvla_bench.errors import BenchError, UnknownChoiceError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered name: its target (an object or 'module:attr'), a help line, its source."""

    name: str
    target: Any
    help: str = ""
    source: str = "worldvla_bench"

    @property
    def target_text(self) -> str:
        if isinstance(self.target, str):
            return self.target
        module = getattr(self.target, "__module__", "?")
        return f"{module}:{getattr(self.target, '__qualname__', repr(self.target))}"


def import_target(target: str, what: str = "attribute") -> Any:
    """Import 'package.module:attr' (attr may be dotted); one-line errors for every failure.
    `what` names the attribute in the message ('class')."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise BenchError(f"bad target {target!r}: expected 'package.module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise BenchError(f"cannot import module {module_name!r}: {error}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BenchError(f"module {module_name!r} has no {what} {attr!r}")
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Names -> plugins of one kind, with lazy imports, entry points and a base-class check.

    `kind` names the plugin in messages ('policy'); `base`, if given, is the class every loaded
    target must subclass; `group` is the entry-point group read once, on first lookup.
    """

    def __init__(self, kind: str, base: type | None = None, group: str | None = None,
                 check: Callable[[Any], bool] | None = None) -> None:
        self.kind = kind
        self.base = base
        self.group = group
        self._check = check
        self._entries: dict[str, Entry] = {}
        self._entry_points_read = group is None

    # -- registration ---------------------------------------------------------------------
    def register(self, name: str, target: Any, help: str = "", source: str = "worldvla_bench",
                 overwrite: bool = False) -> None:
        """Add `name`; registering a different target under a taken name needs `overwrite`."""
        old = self._entries.get(name)
        if old is not None and not overwrite and old.target != target:
            raise BenchError(f"{self.kind} {name!r} is already registered as {old.target_text} "
                             f"(from {old.source})")
        self._entries[name] = Entry(name, target, help, source)

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for point in metadata.entry_points(group=self.group):
            if point.name in self._entries:
                continue  # the first registration wins; a plugin cannot shadow a built-in
            dist = getattr(point, "dist", None)
            source = dist.name if dist is not None else "entry point"
            self._entries[point.name] = Entry(point.name, point.value, "", source)

    # -- lookup ---------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        self._read_entry_points()
        return [self._entries[name] for name in sorted(self._entries)]

    def names(self) -> list[str]:
        return [entry.name for entry in self.entries()]

    def __contains__(self, name: str) -> bool:
        self._read_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def entry(self, name: str) -> Entry:
        """The entry of a registered name; an unknown name raises with the closest names."""
        self._read_entry_points()
        if name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.6)
        raise UnknownChoiceError(self.kind, name, sorted(self._entries) + ["package.module:attr"],
                                 close=close)

    def __getitem__(self, name: str) -> T:
        return self.load(name)

    def load(self, name: str) -> T:
        """The plugin for a name or a 'module:attr' target, imported and checked."""
        if ":" in name and name not in self:
            target: Any = name
        else:
            target = self.entry(name).target
        what = "class" if self.base is not None else "attribute"
        obj = import_target(target, what) if isinstance(target, str) else target
        if self.base is not None and not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise BenchError(f"{self.kind} {name!r} ({target}) is not a subclass of "
                             f"{self.base.__module__}.{self.base.__qualname__}")
        if self._check is not None and not self._check(obj):
            raise BenchError(f"{self.kind} {name!r} ({target}) is not a valid {self.kind}")
        return obj


def instantiate_check(cls: Callable[..., Any], kwargs: dict[str, Any], what: str) -> None:
    """Raise one line if `cls` does not take these keyword arguments (without calling it): not
    in its signature, not of its annotated type, or refused by its optional
    `check_arguments(**kwargs)` classmethod (which raises ValueError for values out of range)."""
    try:
        signature = inspect.signature(cls)
    except ValueError:  # no signature to check (a builtin): let the call speak for itself
        return
    try:
        bound = signature.bind(**kwargs)
    except TypeError as error:
        names = [n for n, p in signature.parameters.items()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        hints = [f"did you mean {' or '.join(map(repr, close))} for {key!r}?"
                 for key in kwargs if key not in signature.parameters
                 for close in [difflib.get_close_matches(key, names, n=2, cutoff=0.6)] if close]
        taken = f"; it takes: {', '.join(names)}" if names else ""
        raise BenchError(f"bad arguments for {what}: {error}"
                         + (f" ({' '.join(hints)})" if hints else "") + taken) from None
    hints = _type_hints(cls)
    for name, value in bound.arguments.items():
        hint = hints.get(name)
        if hint is not None and not _fits(value, hint):
            shown = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise BenchError(f"bad argument for {what}: {name}={value!r} is not of type {shown}")
    check = getattr(cls, "check_arguments", None)
    if callable(check):
        try:
            check(**kwargs)
        except ValueError as error:
            raise BenchError(f"bad argument for {what}: {error}") from None


def _type_hints(cls: Callable[..., Any]) -> dict[str, Any]:
    """The annotations of a class's constructor (or a function), resolved; {} if they cannot be."""
    target = cls.__init__ if inspect.isclass(cls) else cls
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation naming something not importable here: check nothing
        return {}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a value given on the command line (a YAML scalar or list) fits an annotation.
    Checked: bool, int (not a bool, not 2.7), float (an int too), str, None, unions of them,
    and list / tuple / dict containers (their outer type); anything else is accepted."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return True


def instantiate(cls: Callable[..., T], kwargs: dict[str, Any], what: str) -> T:
    """`cls(**kwargs)`, with arguments the constructor does not take reported in one line
    (checked against its signature first, so a TypeError raised inside it stays a bug)."""
    instantiate_check(cls, kwargs, what)
    return cls(**kwargs)


@dataclass(frozen=True)
class Command:
    """A `worldvla-bench` subcommand: a help line, and the 'module:function' that adds its argparse
    parser (`function(subparsers)`), imported only when the command runs, so that listing the
    commands imports nothing heavy."""

    help: str
    add_parser: str

"""Package layout only (everything else is in pyproject.toml).

The repository keeps the built-in policies in `policies/` and the suite files in `tasks/`, as the
project layout says; installed, they live inside the package's namespace, as
`worldvla_bench.policies` and `worldvla_bench/suite_files/*.yaml`, so that a non-editable install
finds every suite and built-in policy and installs no top-level `policies` package of its own.
pyproject.toml cannot list mapped sub-packages next to discovered ones, hence this file.

The data directories (templates, schema, shipped weights, panels) are listed as the namespace
packages Python takes them for, each with its files, so setuptools neither warns about them nor
may drop them ("Package would be ignored", setuptools' package discovery guide).
"""

from setuptools import find_namespace_packages, find_packages, setup

POLICIES = ["worldvla_bench.policies"] + [
    f"worldvla_bench.policies.{name}" for name in find_packages("policies")
]
# directories that hold data, not modules: {package: its files}
DATA = {
    "worldvla_bench.suite_files": ["*.yaml"],
    "worldvla_bench.suite_files.panels": ["*.yaml"],
    "worldvla_bench.integrations.worldvla.weights": ["*.pt", "*.md"],
    "worldvla_bench.schemas": ["*.json"],
    "worldvla_bench.html": ["*"],
}

setup(
    packages=find_namespace_packages(include=["worldvla_bench", "worldvla_bench.*"],
                                     exclude=["*.__pycache__", "worldvla_bench.policies*"])
    + POLICIES + ["worldvla_bench.suite_files", "worldvla_bench.suite_files.panels"],
    package_dir={"worldvla_bench.policies": "policies", "worldvla_bench.suite_files": "tasks"},
    package_data=DATA,
)

"""Package layout only (everything else is in pyproject.toml).

The repository keeps the built-in policies in `policies/` and the suite files in `tasks/`, as the
project layout says; installed, they live inside the package's namespace, as
`worldvla_bench.policies` and `worldvla_bench/suite_files/*.yaml`, so that a non-editable install
finds every suite and built-in policy and installs no top-level `policies` package of its own.
pyproject.toml cannot list mapped sub-packages next to discovered ones, hence this file.
"""

from setuptools import find_packages, setup

POLICIES = ["worldvla_bench.policies"] + [
    f"worldvla_bench.policies.{name}" for name in find_packages("policies")
]

setup(
    packages=find_packages(include=["worldvla_bench", "worldvla_bench.*"]) + POLICIES
    + ["worldvla_bench.suite_files"],
    package_dir={"worldvla_bench.policies": "policies", "worldvla_bench.suite_files": "tasks"},
    package_data={"worldvla_bench.suite_files": ["*.yaml", "panels/*.yaml"],
                  "worldvla_bench.integrations.worldvla": ["weights/*.pt", "weights/*.md"],
                  "worldvla_bench": ["schemas/*.json", "html/*"]},
)

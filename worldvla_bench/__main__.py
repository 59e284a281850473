"""`python -m worldvla_bench ...`: the same as the `worldvla-bench` command."""

import sys

from worldvla_bench.cli import main

sys.exit(main())

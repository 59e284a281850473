"""Built-in policies, one folder each. Found by name through `worldvla_bench.policy`."""

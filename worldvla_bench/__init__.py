"""worldvla-bench: evaluation harness for autoregressive action world models on LIBERO."""

__version__ = "0.1.0"

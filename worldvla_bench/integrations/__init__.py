"""Integrations: packages that plug a model family into the harness core through the registry's
entry points (`worldvla_bench.policies`, `.world_models`, `.commands`), exactly as a user's own
package would. The core never imports them; see docs/architecture.md."""

"""The served model's identity, the same for both of the `remote` policy's protocols.

A policy server names what it serves in its metadata (openpi) or its `hello` (vla-eval); the
`remote` policy keeps that identity in every record, and a connection that comes back to a server
serving another model ends the episode with `switch_message`, naming both.
"""

from __future__ import annotations

from typing import Any

from worldvla_bench.manifest import describe_served_model

#: metadata keys that describe a connection or the server's options, not the model it serves
NOT_MODEL = ("session", "server_timing", "max_batch", "batched", "extensions",
             "harness_version")


def served_identity(metadata: dict[str, Any]) -> dict[str, Any]:
    """The served model's identity from a server's metadata: our server's policy, its arguments
    and its checkpoint fingerprint (`checkpoint`, when the policy gives one); any other server's
    metadata whole, less what describes the connection (`NOT_MODEL`)."""
    if isinstance(metadata.get("worldvla_bench"), dict):  # our vla-eval server's hello
        return served_identity(metadata["worldvla_bench"])
    if metadata.get("server") == "worldvla_bench":
        return {key: metadata[key] for key in ("policy", "policy_kwargs", "checkpoint")
                if key in metadata}
    return {key: value for key, value in metadata.items() if key not in NOT_MODEL}


def switch_message(uri: str, before: dict[str, Any], now: dict[str, Any]) -> str:
    """The one line that ends an episode whose connection came back to another model."""
    return (f"policy server {uri} came back serving {describe_served_model(now, before)}, not "
            f"{describe_served_model(before, now)}: the episode ends here")

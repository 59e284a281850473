"""Deliberately broken policies, loaded by `module:Class` path in the tests."""

from __future__ import annotations

import numpy as np

from worldvla_bench.policy import EpisodeContext, Policy


class NanOnTrialOnePolicy(Policy):
    """Returns NaN actions in trial 1, zeros otherwise."""

    def reset(self, context: EpisodeContext) -> None:
        self.trial = context.trial

    def act(self, observation):
        return np.full((3, 7), np.nan) if self.trial == 1 else np.zeros((3, 7))


class WrongShapePolicy(Policy):
    """Returns (2, 6) chunks."""

    def act(self, observation):
        return np.zeros((2, 6))


class UnbuildablePolicy(Policy):
    """Its constructor raises, as a policy whose weights are missing does."""

    def __init__(self) -> None:
        raise FileNotFoundError("no weights at /nowhere")

    def act(self, observation):
        return np.zeros((1, 7))


class DiesOnTrialZeroPolicy(Policy):
    """Zeros, except that a worker starting trial 0 exits on the spot (`os._exit(1)`, as a
    crashing native library does): every time, or only the first time if `marker` is a path."""

    def __init__(self, marker: str | None = None) -> None:
        self.marker = marker

    def reset(self, context: EpisodeContext) -> None:
        import os

        if context.trial == 0 and not (self.marker and os.path.exists(self.marker)):
            if self.marker:
                with open(self.marker, "w") as stream:
                    stream.write(str(os.getpid()))
            os._exit(1)

    def act(self, observation):
        return np.zeros((1, 7))


class ServerGoneOnTrialOnePolicy(Policy):
    """Zeros, except that trial 1's second call finds its policy server gone for good, as the
    `remote` policy does once its retries are spent (`ServerUnreachableError`)."""

    def reset(self, context: EpisodeContext) -> None:
        self.trial, self.calls = context.trial, 0

    def act(self, observation):
        from worldvla_bench.errors import ServerUnreachableError

        self.calls += 1
        if self.trial == 1 and self.calls == 2:
            raise ServerUnreachableError.after(
                "127.0.0.1:9", 4, ConnectionRefusedError(111, "Connection refused"))
        return np.zeros((1, 7))


class SleepyPolicy(Policy):
    """Zeros, one action per call, each call `sleep_s` seconds long (a slow model)."""

    def __init__(self, sleep_s: float = 0.3) -> None:
        self.sleep_s = float(sleep_s)

    def act(self, observation):
        import time

        time.sleep(self.sleep_s)
        return np.zeros((1, 7))


class SleepyCameraPolicy(SleepyPolicy):
    """`SleepyPolicy` reading the third-person camera only, so it acts in imagination too."""

    cameras = ("agentview",)


class HangsOnTrialZeroPolicy(Policy):
    """Zeros, except that its first call in trial 0 never returns (a hung model or server)."""

    def reset(self, context: EpisodeContext) -> None:
        self.trial = context.trial

    def act(self, observation):
        if self.trial == 0:
            import time

            time.sleep(3600)
        return np.zeros((1, 7))


class NotAPolicy:
    """Not a subclass of Policy."""


class PixelSteeredPolicy(Policy):
    """Reads the third-person camera (WorldVLA's profile: 64 px, the previous env step's frame
    too) and moves towards the brighter half of the image: its actions depend on the pixels it
    sees, so a rollout that shows it other frames makes it act otherwise. Chunks of 4."""

    cameras = ("agentview",)
    observation_profile = "worldvla"
    image_size = 64

    def act(self, observation):
        image = observation["agentview_image"].astype(np.float64)
        previous = observation["agentview_history"].astype(np.float64)
        half = image.shape[1] // 2
        steer = np.tanh((image[:, :half].mean() - image[:, half:].mean()) / 10.0)
        motion = np.tanh((image - previous[-1]).mean() if len(previous) else 0.0)
        chunk = np.zeros((4, 7))
        chunk[:, 1] = 0.5 * steer
        chunk[:, 2] = 0.3 * motion - 0.1
        chunk[:, 6] = -1.0
        return chunk


class EndsOnSecondCallPolicy(Policy):
    """Chunks of 2 zero actions; at its second call of an episode it hands over one more
    action and ends the episode (`EndEpisode`), as a model whose answer its eval stops at."""

    def reset(self, context: EpisodeContext) -> None:
        self.calls = 0

    def act(self, observation):
        from worldvla_bench.policy import EndEpisode

        self.calls += 1
        if self.calls == 2:
            raise EndEpisode("broken answer: no action block", np.zeros((1, 7)))
        return np.zeros((2, 7))

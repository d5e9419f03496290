"""The drafter's event window: how long it is and where it sits in the verifier's clip.

The verifier reads a clip of ``samples.window_ms`` (its frames spread over all of it); the drafter reads the
events of its own window inside that clip: ``samples.event_window_ms`` long, at the clip's start, centre or end
(``samples.event_window_at``). EventGPT was built for 50 ms streams and its inference refuses streams of 100 ms or
more (github XduSyL/EventGPT, ``common/common.py``), so with an EventGPT checkpoint the window defaults to 50 ms and
a window of 100 ms or more is refused unless ``samples.allow_long_event_window`` is set. The toy drafter is trained
by the pipeline on whatever window it is given; its default is the whole clip, the length that measured best on
the toy (README, "Event windows").

Only this module decides the window: it runs on the whole config before the stages get their slices, so the
samples stage receives a concrete length.
"""

from __future__ import annotations

import json
from pathlib import Path

EVENTGPT_WINDOW_MS = 50
"""The stream length EventGPT was built for (its sample streams are ~50 ms)."""
EVENTGPT_MAX_WINDOW_MS = 100
"""EventGPT's inference refuses streams this long or longer."""
PLACEMENTS = ("start", "center", "end")
EVENTGPT_MODEL_TYPE = "EventChat_llama"


class EventWindowError(ValueError):
    """An event window the drafter cannot read; the message names the setting."""


def checkpoint_model_type(path_or_id: str) -> str | None:
    """``model_type`` of a checkpoint given as a directory or a hub id in the local cache; None if unreadable."""
    config_file = Path(path_or_id).expanduser() / "config.json"
    if not config_file.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(str(path_or_id), "config.json")
        except ValueError:  # not a valid repo id
            return None
        if not isinstance(cached, str):
            return None
        config_file = Path(cached)
    try:
        return json.loads(config_file.read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def drafter_kind(config: dict) -> str:
    """``toy`` (trained by the pipeline: toy data), ``eventgpt``, ``llava`` or ``unknown`` (not readable yet)."""
    if config["data"]["source"] == "toy":
        return "toy"
    model_type = checkpoint_model_type(config["models"]["drafter"]["path"])
    if model_type is None:
        return "unknown"
    return "eventgpt" if model_type == EVENTGPT_MODEL_TYPE else "llava" if model_type == "llava" else "unknown"


def default_event_window_ms(config: dict) -> int:
    """The whole clip for the toy drafter, EventGPT's 50 ms for any checkpoint."""
    return config["samples"]["window_ms"] if drafter_kind(config) == "toy" else EVENTGPT_WINDOW_MS


def check_event_window(samples: dict, kind: str) -> None:
    """Refuse a window the drafter cannot read: longer than the clip, or too long for EventGPT unless allowed."""
    length, clip = samples["event_window_ms"], samples["window_ms"]
    if length > clip:
        raise EventWindowError(
            f"samples.event_window_ms: {length} ms is longer than the verifier's clip (samples.window_ms: {clip} ms)"
        )
    if kind == "eventgpt" and length >= EVENTGPT_MAX_WINDOW_MS and not samples["allow_long_event_window"]:
        raise EventWindowError(
            f"samples.event_window_ms: {length} ms with an EventGPT drafter; EventGPT reads streams shorter than "
            f"{EVENTGPT_MAX_WINDOW_MS} ms ({EVENTGPT_WINDOW_MS} ms by design, its inference refuses longer ones). "
            f"Set samples.event_window_ms below {EVENTGPT_MAX_WINDOW_MS} (e.g. {EVENTGPT_WINDOW_MS}), or "
            "samples.allow_long_event_window: true to feed it longer windows anyway"
        )


def resolve_event_window(config: dict) -> dict:
    """Fill ``samples.event_window_ms`` when null and check it against the drafter; return ``config``."""
    samples = config["samples"]
    if samples.get("event_window_ms") is None:
        samples["event_window_ms"] = default_event_window_ms(config)
    check_event_window(samples, drafter_kind(config))
    return config


def place_event_window(t_start_us: int, t_end_us: int, length_us: int, at: str) -> tuple[int, int]:
    """``[start, end)`` µs of a ``length_us`` window at the ``start``, ``center`` or ``end`` of the clip."""
    if at not in PLACEMENTS:
        raise EventWindowError(f"samples.event_window_at: {at!r}, expected one of {', '.join(PLACEMENTS)}")
    slack = t_end_us - t_start_us - length_us
    offset = {"start": 0, "center": slack // 2, "end": slack}[at]
    return t_start_us + offset, t_start_us + offset + length_us

"""Question sets and toy ground-truth answers.

A question set is a list of ``Question``. The built-in ``toy`` set has eleven
templates whose answers are derived from the toy world's ground truth; the
``dsec`` set holds open questions about driving scenes (no reference answers,
as for real DSEC). A path to a JSON list of strings is a custom set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .dsec import DataError

NUMBERS = ["no", "one", "two", "three", "four", "five"]


@dataclass(frozen=True)
class Question:
    qid: str
    text: str
    answer: Callable[[dict], str] | None = None


def _name(obj: dict) -> str:
    return f"{obj['color']} {obj['category']}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return " , ".join(parts[:-1]) + " and " + parts[-1]


def _is(objs: list) -> str:
    return "is" if len(objs) == 1 else "are"


def _objects(w: dict) -> str:
    if not w["objects"]:
        return "the road is empty ."
    return _join([f"a {_name(o)}" for o in w["objects"]]) + " ."


def _count(w: dict) -> str:
    n = len(w["objects"])
    if n == 1:
        return "there is one moving object ."
    return f"there are {NUMBERS[n]} moving objects ."


def _time_of_day(w: dict) -> str:
    return "it is daytime ." if w["time_of_day"] == "day" else "it is night ."


def _colors(w: dict) -> str:
    if not w["objects"]:
        return "there are no objects ."
    return _join([f"the {o['category']} is {o['color']}" for o in w["objects"]]) + " ."


def _motion(o: dict) -> str:
    if o["direction"] in ("left", "right"):
        return f"moving {o['direction']}"
    return o["direction"]


def _directions(w: dict) -> str:
    if not w["objects"]:
        return "nothing is moving ."
    return _join([f"the {o['category']} is {_motion(o)}" for o in w["objects"]]) + " ."


def _pedestrian(w: dict) -> str:
    if any(o["category"] == "pedestrian" for o in w["objects"]):
        return "yes , there is a pedestrian ."
    return "no , there is no pedestrian ."


def _fast(w: dict) -> str:
    fast = [o for o in w["objects"] if o["speed"] == "fast"]
    if fast:
        return "yes , " + _join([f"the {o['category']}" for o in fast]) + f" {_is(fast)} moving fast ."
    if w["objects"]:
        return "no , everything is moving slowly ."
    return "no , nothing is moving ."


def _empty(w: dict) -> str:
    n = len(w["objects"])
    if n == 0:
        return "yes , the road is empty ."
    noun = "object" if n == 1 else "objects"
    return f"no , there {'is' if n == 1 else 'are'} {NUMBERS[n]} {noun} on the road ."


def _approaching(w: dict) -> str:
    near = [o for o in w["objects"] if o["direction"] == "approaching"]
    if near:
        return "yes , " + _join([f"a {_name(o)}" for o in near]) + f" {_is(near)} approaching ."
    return "no , nothing is approaching ."


def _describe(w: dict) -> str:
    when = "a daytime" if w["time_of_day"] == "day" else "a night"
    if not w["objects"]:
        return f"{when} road scene with an empty road ."
    parts = [f"a {o['speed']} {_name(o)} {_motion(o)}" for o in w["objects"]]
    return f"{when} road scene with " + _join(parts) + " ."


ORDINALS = ["first", "second", "third", "fourth", "fifth"]


def _adverb(speed: str) -> str:
    return "slowly" if speed == "slow" else "fast"


def _report(w: dict) -> str:
    """The long answer: time of day, the count, then one sentence per object (as long as Video-LLaVA's answers)."""
    sentences = [_time_of_day(w)]
    objs = w["objects"]
    if not objs:
        return " ".join(sentences + ["the road is empty ."])
    sentences.append(_count(w))
    for o, ordinal in zip(objs, ORDINALS):
        sentences.append(f"the {ordinal} is a {_name(o)} {_motion(o)} {_adverb(o['speed'])} .")
    return " ".join(sentences)


TOY = [
    Question("objects", "What objects are in the scene?", _objects),
    Question("count", "How many objects are moving?", _count),
    Question("time_of_day", "Is it day or night?", _time_of_day),
    Question("colors", "What colors are the objects?", _colors),
    Question("directions", "In which direction are the objects moving?", _directions),
    Question("pedestrian", "Is there a pedestrian in the scene?", _pedestrian),
    Question("fast", "Are any objects moving fast?", _fast),
    Question("empty", "Is the road empty?", _empty),
    Question("approaching", "Is anything approaching the camera?", _approaching),
    Question("describe", "Describe the scene.", _describe),
    Question("report", "Report the time of day, then each object with its colour, direction and speed.", _report),
]
LONG_ANSWERS = ("describe", "report")
"""The toy questions whose answers run 10-40 tokens (Video-LLaVA's run 20-50): the benchmark's default in the toy."""

DSEC = [
    Question(f"dsec_{i}", text)
    for i, text in enumerate(
        [
            "What is happening in this scene?",
            "Describe the scene in detail.",
            "What objects can you see?",
            "Are there any vehicles on the road?",
            "Are there any pedestrians?",
            "What is the weather like?",
            "Is it day or night?",
            "What is the road layout?",
            "What is the ego vehicle doing?",
            "Is there anything the driver should pay attention to?",
        ]
    )
]

BUILTIN = {"toy": TOY, "dsec": DSEC}


def load_question_set(name: str, max_questions: int) -> list[Question]:
    """The first ``max_questions`` questions of a built-in set or of a JSON list file."""
    if name in BUILTIN:
        questions = BUILTIN[name]
    else:
        path = Path(name)
        if not path.is_file():
            raise DataError(
                f"samples.questions: unknown question set {name!r} "
                f"(built-in: {', '.join(BUILTIN)}; or a path to a JSON list of questions)"
            )
        texts = json.loads(path.read_text())
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DataError(f"{path}: a question set file must be a JSON list of strings")
        questions = [Question(f"q{i}", t) for i, t in enumerate(texts)]
    return questions[:max_questions]


CATEGORY_ORDER = ("car", "truck", "pedestrian", "cyclist")


def window_ground_truth(gt: dict, t_start_us: int, t_end_us: int) -> dict:
    """Ground truth of one window: the objects visible in at least half its frames, listed by category."""
    frames = [f for f in gt["frames"] if t_start_us <= f["t_us"] < t_end_us]
    counts: dict[int, int] = {}
    for f in frames:
        for oid in f["visible"]:
            counts[oid] = counts.get(oid, 0) + 1
    visible = {oid for oid, c in counts.items() if 2 * c >= max(len(frames), 1)}
    return {
        "time_of_day": gt["time_of_day"],
        "objects": sorted((o for o in gt["objects"] if o["id"] in visible), key=lambda o: _category_rank(o["category"])),
    }


def _category_rank(category: str) -> int:
    return CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else len(CATEGORY_ORDER)


def answers(questions: list[Question], window_gt: dict | None) -> list[str]:
    """Reference answers for one window; empty strings where none is known."""
    if window_gt is None:
        return ["" for _ in questions]
    return [q.answer(window_gt) if q.answer else "" for q in questions]

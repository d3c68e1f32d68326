"""Encoder effort (``--effort``), following cjxl: 1 .. 9, higher is slower and smaller.

Up to the default (7) the encoder is today's, its speed and its output. Above it, the
latents of each image are refined before coding (``refine.py``) for this many steps,
chosen with ``benchmarks/effort.py`` (README, Use). Light: the command line imports it
to check the option without torch.
"""

from __future__ import annotations

from .errors import InputError

__all__ = ["DEFAULT_EFFORT", "EFFORTS", "STEPS", "check_effort", "steps_for"]

DEFAULT_EFFORT = 7
EFFORTS = range(1, 10)
#: refinement steps of each effort above the default
STEPS = {8: 50, 9: 100}


def check_effort(value: object) -> int:
    """An effort 1 .. 9 from an int or its text; anything else is the user's mistake."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.lstrip("+").isdigit() or int(text) not in EFFORTS:
        raise InputError(f"effort must be an integer from {EFFORTS[0]} to {EFFORTS[-1]}, got {value!r}")
    return int(text)


def steps_for(effort: object) -> int:
    """Refinement steps of an effort (0: today's encoder)."""
    return STEPS.get(check_effort(effort), 0)

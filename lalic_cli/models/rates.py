"""The λ ladder of LALIC's qualities: one home for training, refinement and the docs.

q1..q6 are the official levels (the authors' checkpoints); q7 and q8 go on at the same
ratio (about 1.93x) for the high-quality end that variable-rate weights reach.
"""

from __future__ import annotations

import math

LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


def lambda_for(quality: float) -> float:
    """λ of a quality on the ladder; fractional qualities interpolate geometrically, as
    the gain vectors do (q2.5: √(λ2·λ3))."""
    q = min(max(float(quality), 1.0), float(len(LAMBDAS))) - 1
    lo = min(int(math.floor(q)), len(LAMBDAS) - 2)
    frac = q - lo
    return LAMBDAS[lo] ** (1 - frac) * LAMBDAS[lo + 1] ** frac

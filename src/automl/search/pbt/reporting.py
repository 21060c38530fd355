"""What the population loop tells: its console line for a queued segment, and automl_state.yaml's
record of the running segments and the members' latest scores."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from automl.search.pbt.population import Population, SegmentSpec
from automl.search.study import records
from automl.search.trials.watch import Running


def state_payload(*, phase: str, study: str, running: Mapping[int, Running],
                  population: Population | None, generations: int, finished: Any,
                  budget: tuple[float, float, float]) -> dict[str, Any]:
    """automl_state.yaml's content (`budget`: total, used and left seconds)."""
    latest = population.latest() if population is not None else {}
    total, used, left = budget
    return {
        "phase": phase, "study": study, "search_method": "pbt",
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "running": [{"trial": n, "member": r.trial.user_attrs.get(records.MEMBER),
                     "generation": r.trial.user_attrs.get(records.GENERATION), "frames": r.frames,
                     "score": r.score if math.isfinite(r.score) else None}
                    for n, r in sorted(running.items())],
        "members": {m: {"generation": s.generation, "frames": s.reached,
                        "score": s.score if math.isfinite(s.score) else None}
                    for m, s in sorted(latest.items())},
        "generations": generations,
        "finished": finished,
        "budget": {"total_s": round(total, 1), "used_s": round(used, 1), "left_s": round(left, 1)},
    }


def segment_line(spec: SegmentSpec) -> str:
    """What the console says when a segment is queued: an exploit step, or nothing."""
    if spec.generation == 0:
        return f"automl: pbt member {spec.member} queued from the start" if spec.member == 0 else ""
    if spec.exploit is None:
        return ""
    step = spec.exploit
    return (f"automl: pbt member {spec.member} copies member {step.donor} for segment "
            f"{spec.generation} (score {step.replaced_score:.4g} against {step.donor_score:.4g}, "
            f"margin {step.margin:.3g}; ranked among generations "
            + ", ".join(f"{m}: {g}" for m, g in sorted((spec.compared or {}).items())) + ")")

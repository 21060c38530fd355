"""The reports of a population-based training study (automl.search.pbt), from the study and the
segments' run folders alone:

- pbt/segments.csv: one row per segment (member, generation, parent, donor, frames, score, values);
- pbt/lineage.yaml: every exploit step (who copied whom, at which frames, the scores and margin),
  and the winner's lineage back to generation 0;
- pbt/schedule.yaml: the winner's hyperparameter schedule (frames -> values);
- pbt/model.pt: the winner's final policy (its last segment's model.pt);
- plots/pbt_members.png: every member's score against frames, exploit steps marked, the winner's
  lineage drawn over them;
- pbt/tb/member_<m>/: one TensorBoard run per member across its segments, its hyperparameters as
  scalars and its exploit steps marked (pbt_tensorboard.py);
- hyperparameter_importance.yaml: what a ranking rests on in a PBT study (it does not apply: values
  change along a lineage), and the values the winning lineages held against the others'.

The winner is the population's own decision (automl.search.pbt.population.Population.winner).
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from automl.analysis.folder import load_study_space
from automl.analysis.pbt_tensorboard import write_member_runs
from automl.analysis.yaml_style import dump_yaml
from automl.paths import StudyPaths, atomic_write_text
from automl.search.pbt.explore import mutable
from automl.search.pbt.plan import PbtPlan
from automl.search.pbt.population import NO_PARENT, Population, Segment, finite_or_none
from automl.search.space import SearchSpace, thaw
from automl.search.study import records

MEMBERS_PLOT = "pbt_members.png"


def pbt_dir(study_paths: StudyPaths) -> Path:
    """pbt/: the population's reports."""
    return study_paths.root / "pbt"


def is_pbt(study: optuna.Study) -> bool:
    """Whether the study trains a population (it stores a PBT plan)."""
    return isinstance(study.user_attrs.get(records.PBT_PLAN), dict)


@dataclass
class PbtView:
    """A PBT study read once: its plan, space and population."""

    study_paths: StudyPaths
    plan: PbtPlan
    space: SearchSpace
    population: Population

    @classmethod
    def read(cls, study_paths: StudyPaths, study: optuna.Study) -> PbtView | None:
        """None where the study is not a PBT study or its space cannot be read."""
        if not is_pbt(study):
            return None
        plan = PbtPlan.from_dict(study.user_attrs[records.PBT_PLAN])
        trials = [t for t in study.get_trials(deepcopy=False) if records.in_pbt(t)]
        space = load_study_space(study_paths, trials)
        if space is None:
            return None
        return cls(study_paths, plan, space, Population.of(study, plan, space))

    @property
    def by_number(self) -> dict[int, Segment]:
        return {s.number: s for s in self.population.segments}

    def last_generation(self) -> int | None:
        """The last generation with every member's result."""
        return self.population.last_complete()

    def winner(self) -> Segment | None:
        """The population's winner (automl.search.pbt.population.Population.winner)."""
        return self.population.winner()

    def lineage(self, segment: Segment) -> list[Segment]:
        """The segments whose states `segment` continues, generation 0 first, `segment` last."""
        chain, by_number = [segment], self.by_number
        while chain[-1].parent != NO_PARENT and chain[-1].parent in by_number:
            chain.append(by_number[chain[-1].parent])
        return chain[::-1]

    def exploit_steps(self) -> list[dict[str, Any]]:
        """Every exploit step of the population, in order of generation and member."""
        steps, seen = [], set()
        for s in self.population.segments:  # by number: a retry of a step comes after it
            if s.donor is None or (s.member, s.generation) in seen:
                continue
            seen.add((s.member, s.generation))
            step = s.attr(records.EXPLOIT) or {}
            steps.append({"generation": s.generation, "frames": s.frames_start, "member": s.member,
                          "donor": s.donor, "copied_trial": s.parent, "trial": s.number,
                          "donor_score": step.get("donor_score"),
                          "replaced_score": step.get("replaced_score"), "margin": step.get("margin")})
        return sorted(steps, key=lambda x: (x["generation"], x["member"]))

    def schedule(self, lineage: list[Segment]) -> list[dict[str, Any]]:
        """The lineage's values per segment: {until, values (mutable config keys), member, trial}."""
        out = []
        for s in lineage:
            values = {p.key: thaw(s.values[p.name]) for p in self.space.params
                      if mutable(p) and p.name in s.values}
            out.append({"from": s.frames_start, "until": s.frames_end, "member": s.member,
                        "trial": s.number, "values": values})
        return out

    def fixed_values(self, segment: Segment) -> dict[str, Any]:
        """The member's values that no segment changes (network sizes, ...), by config key, with
        the space's fixed values."""
        fixed = {k: thaw(v) for k, v in self.space.fixed.items()}
        fixed.update({p.key: thaw(segment.values[p.name]) for p in self.space.params
                      if not mutable(p) and p.name in segment.values})
        return fixed


# ----------------------------------------------------------------------------------- writing
def write_pbt_reports(study_paths: StudyPaths, study: optuna.Study) -> dict[str, Any] | None:
    """Every PBT report (module docstring); returns the importance report's PBT part (None for a
    study that is not PBT)."""
    view = PbtView.read(study_paths, study)
    if view is None:
        return None
    folder = pbt_dir(study_paths)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "segments.csv", segments_csv(view))
    winner = view.winner()
    lineage = view.lineage(winner) if winner is not None else []
    atomic_write_text(folder / "lineage.yaml", dump_yaml({
        "exploit_steps": view.exploit_steps(),
        "winner": None if winner is None else {
            "member": winner.member, "trial": winner.number, "score": winner.score,
            "frames": winner.reached, "lineage": [{"trial": s.number, "member": s.member,
                                                   "generation": s.generation,
                                                   "frames": [s.frames_start, s.frames_end],
                                                   "score": finite_or_none(s.score)} for s in lineage]}}))
    if winner is not None:
        atomic_write_text(folder / "schedule.yaml",
                          f"# The winner's hyperparameter schedule (member {winner.member}, score "
                          f"{winner.score:.4g}): each segment's values, frames from .. until.\n"
                          + dump_yaml({"fixed": view.fixed_values(winner),
                                       "segments": view.schedule(lineage)}))
        model = study_paths.trial_run(winner.number).model
        if model.exists():
            shutil.copyfile(model, folder / "model.pt")
        else:  # ran on another machine: no copy of an earlier winner may stand for it
            (folder / "model.pt").unlink(missing_ok=True)
    members_plot(view, lineage, study_paths.plots_dir / MEMBERS_PLOT)
    write_member_runs(view, folder / "tb")
    return importance_entry(view, winner)


def segments_csv(view: PbtView) -> str:
    """pbt/segments.csv's text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = view.space.names
    writer.writerow(["trial", "member", "generation", "parent", "donor", "frames_start",
                     "frames_end", "score", "state", "stop_reason", *names])
    for s in view.population.segments:
        writer.writerow([s.number, s.member, s.generation, s.parent,
                         "" if s.donor is None else s.donor, s.frames_start, s.frames_end,
                         "" if not math.isfinite(s.score) else repr(s.score), s.trial.state.name,
                         s.attr(records.STOP_REASON) or "",
                         *(s.values.get(n, "") for n in names)])
    return buffer.getvalue()


def importance_entry(view: PbtView, winner: Segment | None) -> dict[str, Any]:
    """What hyperparameter_importance.yaml says of a PBT study: importance does not apply; the
    mean values (over each lineage's frames) of the better half of the last complete generation
    against the other half."""
    generation = view.last_generation()
    ranked = []
    if generation is not None:
        ranked = sorted(view.population.results[generation].values(),
                        key=lambda s: (not math.isfinite(s.score), -s.score if math.isfinite(s.score)
                                       else 0.0, s.member))
    half = len(ranked) // 2
    top, rest = ranked[:half], ranked[half:]
    held: dict[str, Any] = {}
    for p in view.space.params:
        if not mutable(p) or p.kind in ("choice", "categorical"):
            continue
        held[p.name] = {"winning_half": _held(view, top, p.name), "other_half": _held(view, rest, p.name)}
    return {
        "method": "pbt",
        "importance": "not computed: in population-based training a member's values change as it "
                      "trains and the members copy each other, so no score belongs to one "
                      "configuration; see pbt/schedule.yaml and pbt/lineage.yaml",
        "winner": None if winner is None else {"member": winner.member, "trial": winner.number,
                                               "score": winner.score, "frames": winner.reached},
        "lineage_values": {"generation": generation, "winning_members": [s.member for s in top],
                           "other_members": [s.member for s in rest],
                           "mean_value_over_frames": held},
    }


def _held(view: PbtView, members: list[Segment], name: str) -> float | None:
    """The mean of parameter `name` over the frames of these members' lineages."""
    total, weight = 0.0, 0
    for last in members:
        for s in view.lineage(last):
            frames = max(0, s.frames_end - s.frames_start)
            value = s.values.get(name)
            if isinstance(value, (int, float)) and frames:
                total += float(value) * frames
                weight += frames
    return total / weight if weight else None


def members_plot(view: PbtView, lineage: list[Segment], path: Path) -> Path:
    """Every member's score against frames, exploit steps marked, the winner's lineage over them."""
    from matplotlib.figure import Figure  # a second to import: only to draw

    from automl.analysis.plots import _save, message_figure

    segments = view.population.segments
    if not any(s.trial.intermediate_values for s in segments):
        return _save(message_figure("Population", "no segment has reported a score yet"), path)
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot(1, 1, 1)
    colours = {m: f"C{m % 10}" for m in range(view.plan.population)}
    for s in segments:
        points = sorted(s.trial.intermediate_values.items())
        if s.parent != NO_PARENT and s.parent in view.by_number:  # joined to what it continues
            before = view.by_number[s.parent].trial.intermediate_values
            if before:
                points = [max(before.items()), *points]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, color=colours.get(s.member, "grey"), lw=1, alpha=0.8)
    for step in view.exploit_steps():
        donor = view.by_number.get(step["copied_trial"])
        y = donor.score if donor is not None else math.nan
        ax.plot([step["frames"]], [y], marker="v", ms=7, color=colours.get(step["member"], "grey"),
                markeredgecolor="black")
    points = sorted(p for s in lineage for p in s.trial.intermediate_values.items())
    if points:  # one line through the segments the winner's state went through
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, color="black", lw=2.5, alpha=0.5)
    handles = [ax.plot([], [], color=c, label=f"member {m}")[0] for m, c in colours.items()]
    handles.append(ax.plot([], [], color="black", lw=2.5, alpha=0.5, label="winner's lineage")[0])
    handles.append(ax.plot([], [], ls="", marker="v", color="grey", markeredgecolor="black",
                           label="exploit: copied a top member")[0])
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel("frames")
    ax.set_ylabel("score")
    ax.set_title(f"Population-based training: {view.plan.population} members, "
                 f"{view.plan.generations} segments each")
    ax.grid(alpha=0.3)
    return _save(fig, path)

"""The pruning plan: rungs, brackets and start-up sized to the number of trials a study can run.

Optuna's pruners are built for studies of hundreds of trials. At the 8-30 trials people run, a
Hyperband of 3+ brackets leaves two or three trials per bracket (a trial is judged only against its
own bracket, and TPE samples within it), and successive halving promotes a trial at a rung only if
it is the best so far until `reduction_factor` trials have reached it. So below `HYPERBAND_FROM`
trials the plan is one asynchronous successive-halving bracket (ASHA, as SLM Lab and the Optuna +
ASHA study use), halving at each rung, with only as many (late) rungs as leave about
`MIN_FINALISTS` trials to run to the end; a trial is never pruned at a rung before `min_trials_at_rung`
trials have reported there, nor before the completed trials show that the rung's values predict
their final scores (`RungGate`); the first rung comes no earlier than one episode of every
environment (the score needs finished episodes) and the grace frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial

from automl.schema import CPU_ENVS, GPU_ENVS, EnvConfig

HYPERBAND_FROM = 30
"""Studies of at least this many trials get Hyperband's several brackets."""
TRIALS_PER_BRACKET = 15
"""Hyperband: at most one bracket per this many trials."""
MIN_FINALISTS = 4
"""ASHA: the bracket keeps enough rungs, the latest ones, for about this many trials to run to the
end (validation compares the top 3 on full-length runs). Early points predict the final score
worst, so the rungs dropped are the early ones."""

RUNG_MIN_PAIRS = 6
"""Completed trials with a value at a rung before that rung may prune anything."""
RUNG_MIN_CORRELATION = 0.5
"""A rung prunes only where its values rank the completed trials' final scores with at least this
Spearman correlation: below it, the rung's points do not predict the final score (Pendulum at
100k frames: 0.0-0.6 at 10k-50k frames, 0.9 at 90k), and pruning on them discards good
configurations for unlucky starts."""


@dataclass(frozen=True)
class PruningPlan:
    """What the pruner will do, printed at start and stored in meta.yaml."""

    pruner: str
    """The --pruner option asked for."""
    algorithm: str
    """What runs: asha (one successive-halving bracket), hyperband, median or none."""
    trials: int
    """Trials the study is sized for."""
    first_rung: int
    """Frames before any pruning decision (min_resource; median: warm-up)."""
    frames: int
    """Frames of a full trial (max_resource)."""
    reduction_factor: int
    brackets: int
    rungs: tuple[int, ...]
    """Frames at which the pruner decides (the first bracket's, for Hyperband)."""
    min_trials_at_rung: int
    """No trial is pruned at a rung before this many trials have reported there."""
    startup_trials: int
    """TPE's random start-up, per bracket (TPE samples within a trial's Hyperband bracket)."""
    note: str = ""
    rung_min_pairs: int = RUNG_MIN_PAIRS
    rung_min_correlation: float = RUNG_MIN_CORRELATION
    """asha and hyperband: a rung prunes only once `rung_min_pairs` completed trials show that its
    values rank their final scores with this Spearman correlation or more."""

    def as_dict(self) -> dict[str, Any]:
        """The plan as plain data for meta.yaml (rungs as a list)."""
        data = asdict(self)
        data["rungs"] = list(self.rungs)
        return data

    def describe(self) -> str:
        """One line on the plan for the console: algorithm, brackets, rungs, patience, start-up."""
        if self.algorithm == "none":
            return f"pruning: none ({self.note})" if self.note else "pruning: none"
        why = f" ({self.note})" if self.note else ""
        text = (f"pruning: {self.algorithm}{why}, {self.brief()}; no pruning at a rung before "
                f"{self.min_trials_at_rung} trials reached it; sampler start-up "
                f"{self.startup_trials} trial(s) per bracket")
        if self.algorithm in ("asha", "hyperband"):
            text += (f"; a rung prunes only once {self.rung_min_pairs} completed trials show its "
                     f"values predict their final scores (Spearman >= {self.rung_min_correlation})")
            if self.trials <= self.rung_min_pairs:
                text += f": with {self.trials} trials that cannot happen, so nothing is pruned"
        return text

    def brief(self) -> str:
        """The plan's size: trials, brackets, rungs."""
        rungs = ", ".join(f"{r:,}" for r in self.rungs) or "none"
        return f"{self.trials} trials, {self.brackets} bracket(s), rungs at {rungs} frames"


def first_rung(*, grace: int, eval_frequency: int, episode_frames: int | None) -> int:
    """The earliest frame count a pruner may decide at: after the grace frames, one episode of every
    environment and the first evaluation point, on an evaluation point."""
    earliest = max(grace, eval_frequency, episode_frames or 0)
    return math.ceil(earliest / eval_frequency) * eval_frequency


def _rungs(first: int, frames: int, eta: int) -> tuple[int, ...]:
    rungs, rung = [], first
    while rung < frames:
        rungs.append(rung)
        rung *= eta
    return tuple(rungs)


def _hyperband_brackets(first: int, frames: int, eta: int) -> int:
    # Optuna's HyperbandPruner: floor(log_eta(max_resource / min_resource)) + 1 brackets.
    return math.floor(math.log(frames / first, eta) + 1e-9) + 1


def _startup(trials_per_bracket: float) -> int:
    return max(3, min(10, int(trials_per_bracket // 3)))


def plan_pruning(pruner: str, *, trials: int, frames: int, eval_frequency: int, grace: int,
                 episode_frames: int | None) -> PruningPlan:
    """The plan for `pruner` (--pruner) in a study of `trials` trials of `frames` frames."""
    first = first_rung(grace=grace, eval_frequency=eval_frequency, episode_frames=episode_frames)
    common: dict[str, Any] = {"pruner": pruner, "trials": trials, "frames": frames}
    if pruner == "none" or first >= frames:
        note = "" if pruner == "none" else (
            f"the first rung ({first:,} frames: grace, one episode of every env) is not below "
            f"train.frames ({frames:,})")
        return PruningPlan(**common, algorithm="none", first_rung=first, reduction_factor=1,
                           brackets=1, rungs=(), min_trials_at_rung=0,
                           startup_trials=_startup(trials), note=note)
    if pruner == "median":
        return PruningPlan(**common, algorithm="median", first_rung=first, reduction_factor=1,
                           brackets=1, rungs=(first,),
                           min_trials_at_rung=3, startup_trials=_startup(trials),
                           note="decides at every evaluation point from the first rung on")
    if pruner == "hyperband" and trials >= HYPERBAND_FROM:
        eta, max_brackets = 3, max(1, trials // TRIALS_PER_BRACKET)
        while _hyperband_brackets(first, frames, eta) > max_brackets:
            first *= eta  # fewer brackets: each keeps enough trials to compare
        if first >= frames:
            single = plan_pruning("successive_halving", trials=trials, frames=frames,
                                  eval_frequency=eval_frequency, grace=grace,
                                  episode_frames=episode_frames)
            return replace(single, note="Hyperband's brackets do not fit train.frames: one bracket")
        brackets = _hyperband_brackets(first, frames, eta)
        return PruningPlan(**common, algorithm="hyperband", first_rung=first, reduction_factor=eta,
                           brackets=brackets, rungs=_rungs(first, frames, eta),
                           min_trials_at_rung=eta, startup_trials=_startup(trials / brackets))
    eta = 2 if trials < HYPERBAND_FROM else 3
    rungs = _rungs(first, frames, eta)
    keep = max(1, math.floor(math.log(max(trials / MIN_FINALISTS, 1.0), eta) + 1e-9))
    rungs = rungs[-keep:]
    note = (f"below {HYPERBAND_FROM} trials one bracket keeps every trial comparable; "
            f"{len(rungs)} rung(s) leave about {MIN_FINALISTS} trials to finish"
            if pruner == "hyperband" else "")
    return PruningPlan(**common, algorithm="asha", first_rung=rungs[0], reduction_factor=eta,
                       brackets=1, rungs=rungs, min_trials_at_rung=eta,
                       startup_trials=_startup(trials), note=note)


def expected_frames(plan: PruningPlan) -> float:
    """Mean frames a trial trains under `plan`, if each rung keeps 1/reduction_factor of the trials
    that reach it (Hyperband: its brackets weighted equally; bracket b starts at the b-th rung)."""
    if plan.algorithm in ("none", "median") or not plan.rungs:
        return float(plan.frames)
    eta = plan.reduction_factor
    means = []
    for rungs in [plan.rungs[b:] for b in range(plan.brackets)]:
        total, reach = 0.0, 1.0
        for rung in rungs:
            total += reach * (1 - 1 / eta) * rung
            reach /= eta
        means.append(total + reach * plan.frames)
    return sum(means) / len(means)


def size_to_budget(plan_for: Callable[[int], PruningPlan], *, hp_trials: int, budget_s: float,
                   slots: int, trial_s: float) -> tuple[PruningPlan, int]:
    """The plan for the trials the budget holds when that is fewer than --hp-trials, and that count.

    `trial_s`: a full-length trial's expected seconds. Pruned trials are shorter, so a pruned study
    holds more trials than `budget_s x slots / trial_s`: one step with the plan's mean trial length
    (`expected_frames`) accounts for that."""
    full = budget_s * max(slots, 1) / max(trial_s, 1e-9)
    first = plan_for(max(1, min(hp_trials, math.floor(full))))
    fit = max(1, math.floor(full * first.frames / expected_frames(first)))
    return plan_for(min(hp_trials, fit)), fit


def rung_correlation(study: optuna.Study, step: int) -> tuple[float, int]:
    """Spearman correlation between the values at `step` and the final scores of the study's
    completed trials, and how many trials it rests on (nan below 3, or with constant values)."""
    pairs = [(t.intermediate_values[step], t.value)
             for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
             if step in t.intermediate_values and t.value is not None]
    if len(pairs) < 3:
        return math.nan, len(pairs)
    at_rung, final = zip(*pairs, strict=True)
    if len(set(at_rung)) < 2 or len(set(final)) < 2:
        return math.nan, len(pairs)
    from scipy.stats import spearmanr  # 0.6 s to import: only once a rung is about to prune

    return float(spearmanr(at_rung, final).statistic), len(pairs)


@dataclass(frozen=True)
class RungGate:
    """When a rung may prune: once `min_pairs` completed trials have a value there, and those values
    rank their final scores with a Spearman correlation of `min_correlation` or more (min_pairs 0:
    always)."""

    min_pairs: int = RUNG_MIN_PAIRS
    min_correlation: float = RUNG_MIN_CORRELATION

    def opens(self, study: optuna.Study, step: int) -> bool:
        """Whether the rung at `step` frames may prune in `study` now."""
        if self.min_pairs <= 0:
            return True
        rho, pairs = rung_correlation(study, step)
        return pairs >= self.min_pairs and math.isfinite(rho) and rho >= self.min_correlation


def _patient_prune(inner: BasePruner, bracket: optuna.Study, trial: FrozenTrial, min_trials: int,
                   study: optuna.Study, gate: RungGate) -> bool:
    """`inner`'s decision, except that a rung prunes none while fewer than `min_trials` trials have
    reached it or while its values do not predict the final scores (`gate`, on the whole `study`).

    The inner pruner is always asked (it records the trial's value at the rung); only its "prune"
    is overruled, which leaves the trial promoted past that rung.
    """
    rung = sum(1 for key in trial.system_attrs if key.startswith("completed_rung_"))
    if not inner.prune(bracket, trial):
        return False
    key = f"completed_rung_{rung}"
    reached = sum(1 for t in bracket.get_trials(deepcopy=False) if key in t.system_attrs)
    return reached >= min_trials and (trial.last_step is None or gate.opens(study, trial.last_step))


class PatientPruner(BasePruner):
    """Optuna's successive halving, but a rung prunes no trial while fewer than `min_trials` trials
    have reached it (with fewer, Optuna's rule is "the best so far or out", which at the first
    trials of a small study prunes good configurations for trailing one lucky one), nor while its
    values do not rank the completed trials' final scores (`gate`)."""

    def __init__(self, inner: BasePruner, *, min_trials: int, gate: RungGate | None = None) -> None:
        self.inner, self.min_trials, self.gate = inner, min_trials, gate or RungGate()

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """The inner pruner's decision, overruled at a rung that is not ready (see the class)."""
        return _patient_prune(self.inner, study, trial, self.min_trials, study, self.gate)


class PatientHyperband(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband with the same patience inside each bracket (the rung's predictiveness is
    judged on the whole study). A HyperbandPruner still, so that TPE samples each trial from its
    own bracket's trials."""

    def __init__(self, *, min_trials: int, gate: RungGate | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._min_trials, self._gate = min_trials, gate or RungGate()

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Hyperband's decision within the trial's bracket, with the same patience per rung."""
        if not self._pruners:
            self._try_initialization(study)
        bracket_id = self._get_bracket_id(study, trial)
        bracket = self._create_bracket_study(study, bracket_id)
        return _patient_prune(self._pruners[bracket_id], bracket, trial, self._min_trials, study,
                              self._gate)


def make_pruner(plan: PruningPlan) -> BasePruner:
    """The Optuna pruner that carries out `plan`."""
    if plan.algorithm == "none":
        return optuna.pruners.NopPruner()
    if plan.algorithm == "median":
        # Optuna's median rule decides from `n_warmup_steps` on: the first rung.
        return optuna.pruners.MedianPruner(n_startup_trials=plan.min_trials_at_rung,
                                           n_warmup_steps=plan.first_rung)
    gate = RungGate(min_pairs=plan.rung_min_pairs, min_correlation=plan.rung_min_correlation)
    if plan.algorithm == "hyperband":
        return PatientHyperband(min_trials=plan.min_trials_at_rung, gate=gate,
                                min_resource=plan.first_rung,
                                max_resource=plan.frames, reduction_factor=plan.reduction_factor)
    inner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=plan.first_rung, reduction_factor=plan.reduction_factor,
        min_early_stopping_rate=0)
    return PatientPruner(inner, min_trials=plan.min_trials_at_rung, gate=gate)


def time_limit(env: EnvConfig) -> int | None:
    """The environment's time limit in steps, when the config says it (None: unknown)."""
    if env.kind == "navigation":
        from automl.envs.navigation_params import make_params

        try:
            return make_params(**env.params).max_steps
        except (TypeError, ValueError):
            return None  # the run reports the bad parameter itself
    if env.kind == "gymnasium" and env.gym_id:
        if isinstance(env.params.get("max_episode_steps"), int):
            return int(env.params["max_episode_steps"])
        import gymnasium

        try:
            return gymnasium.spec(env.gym_id).max_episode_steps
        except gymnasium.error.Error:
            return None
    return None


def episode_frames(env: EnvConfig, *, gpus: int) -> int | None:
    """Frames of one time limit of every environment: before that, an evaluation point has seen only
    the episodes short enough to have ended."""
    steps = time_limit(env)
    if steps is None:
        return None
    on_gpu = env.device == "cuda" or (env.device == "auto" and gpus > 0)
    return steps * (env.num_envs or (GPU_ENVS if on_gpu else CPU_ENVS))

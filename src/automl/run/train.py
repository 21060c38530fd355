"""One training run: skrl PPO on a batched environment, task metrics and score to TensorBoard,
config.yaml, summary.json and model.pt in the run dir (and state.pt, to continue it later: see
state.py). Knows nothing of Optuna.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import TextIO

import torch

from automl import reasons, tags
from automl.config import save_resolved
from automl.envs.base import BatchedEnv
from automl.errors import ConfigError
from automl.paths import RunPaths
from automl.run import refit as value_refit
from automl.run import scoring
from automl.run import state as training_state
from automl.run.episodes import EPISODES, SHAPED_RETURN, RecentEpisodes, TermMeans, episodes_per_env
from automl.run.progress import Progress, Tee
from automl.schema import RunConfig
from automl.summary import RunSummary, git_sha, package_versions, write_summary


class Diverged(RuntimeError):
    """NaN or inf in observations, actions, rewards, losses or weights."""


class StopRequested(RuntimeError):
    """SIGTERM or SIGINT: stop, write outputs, exit."""


def reward_weights(cfg: RunConfig, env: BatchedEnv) -> dict[str, float]:
    """reward.scales checked against the terms the environment exposes, over the env's own default
    weights where it has them (`default_scales`: Isaac Lab tasks)."""
    exposed = set(env.reward_terms)
    for term, scale in cfg.reward.scales.items():
        if term not in exposed:
            raise ConfigError(
                file="conf/reward or the command line", key=f"reward.scales.{term}", value=scale,
                rule=f"env `{cfg.env.name}` exposes no term `{term}`; its terms: "
                     f"{', '.join(env.reward_terms)}",
                fix="remove the scale or pick the reward preset of this env (e.g. reward=gymnasium)")
    return {**getattr(env, "default_scales", {}), **cfg.reward.scales}


def shaped_reward(terms: dict[str, torch.Tensor], weights: dict[str, float], *, num_envs: int,
                  device: torch.device) -> torch.Tensor:
    """The reward PPO trains on: sum of weights[term] * terms[term]; zeros when nothing is weighted."""
    reward = torch.zeros(num_envs, device=device)
    for term, scale in weights.items():
        reward = reward + scale * terms[term]
    return reward


def scale_rewards(rewards: torch.Tensor, timestep: int, timesteps: int, *,
                  scale: float) -> torch.Tensor:
    """skrl's rewards_shaper: what PPO learns from is the reward times `ppo.rewards_shaper_scale`."""
    return rewards * scale


def _install_stop_handlers() -> dict[str, bool]:
    flag = {"stop": False}

    def handler(signum: int, frame: object) -> None:
        """Ask the training loop to stop at the next step (it then saves and summarises)."""
        flag["stop"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return flag


def build_agent(cfg: RunConfig, env: BatchedEnv, run: RunPaths, timesteps: int):  # noqa: ANN201
    """skrl PPO with our models and memory; its TensorBoard writer goes to run_dir/tb."""
    from automl.run import import_tensorboard_without_s3

    import_tensorboard_without_s3()
    from skrl.agents.torch.base import ExperimentCfg
    from skrl.agents.torch.ppo import PPO, PPO_CFG
    from skrl.memories.torch import RandomMemory
    from skrl.resources.preprocessors.torch import RunningStandardScaler
    from skrl.resources.schedulers.torch import KLAdaptiveLR

    from automl.run.models import build_models

    p = cfg.ppo
    ppo_cfg = PPO_CFG(
        rollouts=p.rollouts, learning_epochs=p.learning_epochs, mini_batches=p.mini_batches,
        discount_factor=p.discount_factor, gae_lambda=p.gae_lambda, learning_rate=p.learning_rate,
        grad_norm_clip=p.grad_norm_clip, ratio_clip=p.ratio_clip, value_clip=p.value_clip,
        entropy_loss_scale=p.entropy_loss_scale, value_loss_scale=p.value_loss_scale,
        kl_threshold=p.kl_threshold, time_limit_bootstrap=p.time_limit_bootstrap,
        observation_preprocessor=RunningStandardScaler if p.normalize_observations else None,
        observation_preprocessor_kwargs={"size": env.observation_space, "device": env.device},
        value_preprocessor=RunningStandardScaler if p.normalize_values else None,
        value_preprocessor_kwargs={"size": 1, "device": env.device},
        rewards_shaper=None if p.rewards_shaper_scale == 1.0 else
        functools.partial(scale_rewards, scale=p.rewards_shaper_scale),
        # We write TensorBoard points ourselves at eval points (step = frames), never skrl's clock.
        experiment=ExperimentCfg(directory=str(run.root), experiment_name=run.tb.name,
                                 write_interval=2**62, checkpoint_interval=0),
    )
    models = build_models(cfg.network, env.observation_space, env.action_space, env.device)
    memory = RandomMemory(memory_size=p.rollouts, num_envs=env.num_envs, device=env.device)
    agent = PPO(models=models, memory=memory, observation_space=env.observation_space,
                action_space=env.action_space, device=env.device, cfg=ppo_cfg)
    # The same Adam, fused: one kernel per step instead of several small ops per parameter tensor
    # (about a sixth of a CPU update's time otherwise).
    # A shared trunk is both models: each parameter once.
    params = list({id(w): w for w in [*agent.policy.parameters(), *agent.value.parameters()]}.values())
    agent.optimizer = torch.optim.Adam(params, lr=p.learning_rate, fused=True)
    agent.checkpoint_modules["optimizer"] = agent.optimizer
    if p.learning_rate_scheduler == "KLAdaptiveLR":  # built on our optimizer, not skrl's
        agent.scheduler = KLAdaptiveLR(agent.optimizer, kl_threshold=p.learning_rate_kl_threshold)
    agent.init()
    agent.enable_training_mode(True)
    return agent


def check_finite(agent) -> None:  # noqa: ANN001
    """Raise Diverged when the last update's losses or the weights are not finite."""
    for tag in ("Loss / Policy loss", "Loss / Value loss"):
        values = agent.tracking_data.get(tag)
        if values and not math.isfinite(values[-1]):
            raise Diverged(f"{tag} is {values[-1]}")
    for name, model in (("policy", agent.policy), ("value", agent.value)):
        for param in model.parameters():
            if not bool(torch.isfinite(param).all()):
                raise Diverged(f"{name} weights are not finite")


def next_eval_point(frames: int, every: int) -> int:
    """The first multiple of `every` above `frames`: evaluation points lie on one grid of frames,
    so a run resumed from a state lands on the points an uninterrupted run would."""
    return (frames // every + 1) * every


def open_run(cfg: RunConfig, run: RunPaths, resumed: training_state.TrainingState | None = None,
             ) -> tuple[BatchedEnv, dict[str, float], TextIO, Tee]:
    """Seed, build the env, check the reward weights (and the state to resume from) against it,
    and only then create the run dir."""
    from skrl import logger as skrl_logger
    from skrl.utils import set_seed

    from automl.envs.registry import cap_gpu_memory, make_env, resolve_device

    torch.set_num_threads(cfg.train.threads or os.cpu_count() or 1)
    # skrl's logger has its own handler; under Hydra it would also reach the root (stdout)
    # handler, printing every skrl line twice.
    skrl_logger.propagate = False
    set_seed(cfg.train.seed, deterministic=False)
    device = resolve_device(cfg.env.device)
    cap_gpu_memory(device)  # before anything is allocated on it
    env = make_env(cfg.env, device=device, seed=cfg.train.seed)
    try:
        weights = reward_weights(cfg, env)  # bad input: nothing written yet
        scoring.check_reported(cfg.scoring.weights, env.episode_metrics, env_name=cfg.env.name)
        if resumed is not None:
            training_state.check_fits(resumed, cfg, env, str(cfg.train.resume_from))
    except ConfigError:
        env.close()
        raise
    run.root.mkdir(parents=True, exist_ok=True)
    # config.yaml holds the weights the run trained on, the env's defaults included.
    save_resolved(replace(cfg, reward=replace(cfg.reward, scales=weights)), run.config)
    log = run.stdout_log.open("a")
    return env, weights, log, Tee(log, None if cfg.train.quiet else sys.__stdout__)


@dataclass
class Window:
    """What the next evaluation point reports: recent episodes and reward-term means."""

    episodes: RecentEpisodes
    terms: TermMeans = field(default_factory=TermMeans)

    def add(self, terms: dict[str, torch.Tensor], reward: torch.Tensor, done: torch.Tensor,
            episode: dict[str, torch.Tensor]) -> None:
        """Record one env step: episode ends and shaped reward, and the reward terms' means."""
        self.episodes.add(reward, done, episode)
        self.terms.add(terms)


def open_window(cfg: RunConfig, env: BatchedEnv) -> Window:
    """The most recent `scoring.min_episodes` episodes in all (at least one per environment)."""
    per_env = episodes_per_env(cfg.scoring.min_episodes, env.num_envs)
    return Window(RecentEpisodes(num_envs=env.num_envs, device=env.device,
                                 episode_metrics=env.episode_metrics, per_env=per_env))


def collect_step(agent, env: BatchedEnv, weights: dict[str, float],  # noqa: ANN001
                 observations: torch.Tensor, step: int, timesteps: int, window: Window,
                 finite: torch.Tensor) -> torch.Tensor:
    """One batched env step recorded in skrl's memory; returns the next observations."""
    agent.pre_interaction(timestep=step, timesteps=timesteps)
    with torch.no_grad():
        actions, _ = agent.act(observations, None, timestep=step, timesteps=timesteps)
        result = env.step(actions)
        reward = shaped_reward(result.terms, weights, num_envs=env.num_envs, device=env.device)
        # Checked once per rollout (no device sync per step): NaN/inf anywhere ends the run.
        finite &= torch.isfinite(result.observations).all() & torch.isfinite(reward).all()
        finite &= torch.isfinite(actions).all()
        # skrl adds its time-limit bootstrap to the rewards it is given, in place: give it a copy,
        # so the shaped return we log is the environment's. It bootstraps from next_observations,
        # which must be the finished episodes' own last observations, not the reset ones.
        agent.record_transition(
            observations=observations, states=None, actions=actions,
            rewards=reward.unsqueeze(1).clone(), next_observations=result.final_observations,
            next_states=None,
            terminated=result.terminated.unsqueeze(1), truncated=result.truncated.unsqueeze(1),
            infos={}, timestep=step, timesteps=timesteps)
        window.add(result.terms, reward, result.terminated | result.truncated, result.episode)
    agent.post_interaction(timestep=step, timesteps=timesteps)
    return result.observations


def evaluation_point(cfg: RunConfig, agent, window: Window, progress: Progress,  # noqa: ANN001
                     timesteps: int) -> None:
    """Score the most recent episodes and write the point; before any episode has ended, the point
    holds only its episode count (0), so no point is missing."""
    metrics = window.episodes.metrics()
    score = math.nan
    if metrics[EPISODES] > 0:
        score = scoring.point_score(metrics, cfg.scoring.weights)
        progress.metrics, progress.score = metrics, score
    fps = progress.rate(time.monotonic() - progress.start)
    write_point(agent.writer, agent, progress.frames, timesteps, metrics, window.terms.pop(),
                score, fps)


def resume_agent(agent, cfg: RunConfig, resumed: training_state.TrainingState | None,  # noqa: ANN001, ANN201
                 weights: dict[str, float], out: TextIO | Tee):
    """The resumed state into the agent; the critic's refit where the reward changed (run/refit.py:
    its `step` is called after every env step, a no-op without one)."""
    if resumed is None:
        return value_refit.IDLE
    training_state.load_into(agent, resumed, ppo=cfg.ppo)
    return value_refit.start(agent, cfg, resumed.segments, weights, out) or value_refit.IDLE


def train(cfg: RunConfig, run: RunPaths) -> RunSummary:
    """Train, writing every output; returns the summary (also written to summary.json)."""
    resumed = training_state.resumed_from(cfg)  # bad input: nothing built or written yet
    offset = resumed.frames if resumed is not None else 0
    progress = Progress(start=time.monotonic(), offset=offset, frames=offset)
    stop = _install_stop_handlers()
    env, weights, log, out = open_run(cfg, run, resumed)
    timesteps = math.ceil((cfg.train.frames - offset) / env.num_envs)
    agent = build_agent(cfg, env, run, timesteps)
    refit = resume_agent(agent, cfg, resumed, weights, out)
    window = open_window(cfg, env)
    finite = torch.ones((), dtype=torch.bool, device=env.device)
    next_eval = next_eval_point(offset, cfg.train.eval_frequency)
    status, message = reasons.STATUS_COMPLETED, ""
    resuming = f" (resumed from {cfg.train.resume_from} at {offset} frames)" if resumed else ""
    print(f"train_one: env={cfg.env.name} num_envs={env.num_envs} device={env.device} "
          f"frames={cfg.train.frames} run_dir={run.root}{resuming}", file=out)

    observations = env.reset(seed=cfg.train.seed)
    try:
        for step in range(timesteps):
            if stop["stop"]:
                raise StopRequested("stop requested (SIGTERM/SIGINT)")
            observations = collect_step(agent, env, weights, observations, step, timesteps,
                                        window, finite)
            refit.step()
            progress.first_step_at = progress.first_step_at or time.time()
            progress.frames += env.num_envs
            if (step + 1) % cfg.ppo.rollouts == 0:
                if not bool(finite.item()):
                    raise Diverged("NaN or inf in observations, actions or rewards")
                check_finite(agent)
            if progress.frames >= next_eval or step == timesteps - 1:
                next_eval = next_eval_point(progress.frames, cfg.train.eval_frequency)
                evaluation_point(cfg, agent, window, progress, timesteps)
            progress.report(cfg.train.frames, cfg.train.progress_seconds, out)
    except Diverged as err:
        status, message = reasons.STATUS_DIVERGED, str(err)
        print(f"train_one: diverged at {progress.frames} frames: {err}", file=out)
    except StopRequested as err:
        status, message = reasons.STATUS_STOPPED, str(err)
        print(f"train_one: stopped at {progress.frames} frames", file=out)
    except Exception as err:  # a crash still leaves a summary saying why
        status, message = reasons.STATUS_ERROR, f"{type(err).__name__}: {err}"
        traceback.print_exc(file=sys.stderr)
    finally:
        agent.writer.flush()
        agent.writer.close()
        env.close()

    if status in (reasons.STATUS_COMPLETED, reasons.STATUS_STOPPED):
        training_state.save_model(agent, cfg, env, run.model)
        if cfg.train.save_state:  # as of the last update: an unfinished rollout is dropped
            training_state.save_run(agent, cfg, env, run, weights=weights, start=resumed,
                                    frames=progress.frames, offset=progress.offset)
    summary = finish_run(cfg, run, progress, status, message)
    print(f"train_one: {status}; score {summary.score}; {progress.frames} frames in "
          f"{summary.wall_s:.1f} s; outputs in {run.root}", file=out)
    log.close()
    return summary


def finish_run(cfg: RunConfig, run: RunPaths, progress: Progress, status: str,
               message: str) -> RunSummary:
    """summary.json: how the run ended, its score and last task metrics."""
    wall = time.monotonic() - progress.start
    score = progress.score
    summary = RunSummary(
        status=status, score=score if math.isfinite(score) else None, frames=progress.frames,
        wall_s=wall, seed=cfg.train.seed, git_sha=git_sha(),
        metrics={**progress.metrics, "frames_per_second": progress.rate(wall)},
        packages=package_versions(), message=message, started_at=progress.started_at,
        first_step_at=progress.first_step_at)
    write_summary(summary, run.summary)
    return summary


def write_point(writer, agent, frames: int, timesteps: int, metrics: dict[str, float],  # noqa: ANN001
                term_means: dict[str, float], score: float, fps: float) -> None:
    """One evaluation point in TensorBoard (step = frames), flushed so the search sees it now.
    Metrics and score are written only when the point rests on finished episodes."""
    writer.add_scalar(tag=tags.EPISODES, value=metrics[EPISODES], timestep=frames)
    for name, value in metrics.items():
        if tags.is_task_metric(name):
            writer.add_scalar(tag=tags.task_metric_tag(name), value=value, timestep=frames)
    if SHAPED_RETURN in metrics:
        writer.add_scalar(tag=tags.EPISODE_REWARD_MEAN, value=metrics[SHAPED_RETURN],
                          timestep=frames)
    for term, value in term_means.items():
        writer.add_scalar(tag=tags.reward_term_tag(term), value=value, timestep=frames)
    if math.isfinite(score):
        writer.add_scalar(tag=tags.SCORE, value=score, timestep=frames)
    writer.add_scalar(tag=tags.FRAMES_PER_SECOND, value=fps, timestep=frames)
    agent.write_tracking_data(timestep=frames, timesteps=timesteps)
    writer.flush()

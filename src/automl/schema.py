"""Typed schemas of one run's config; the composed Hydra config is checked and converted here, once.

Values live in `conf/` (the Hydra config groups); these dataclasses say what each key is, its type
and its rule. Every mistake becomes one `ConfigError` naming the file, key, value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from automl.errors import ConfigError
from automl.tags import TASK_METRIC_TAGS, TERMINATION_CAUSE_PREFIX, is_task_metric
from automl.typed import build

Device = Literal["auto", "cpu", "cuda"]
EnvKind = Literal["navigation", "gymnasium", "isaaclab", "custom"]
Activation = Literal["elu", "relu", "tanh", "leaky_relu", "selu", "gelu"]

GPU_ENVS = 2048
"""Environments of a run whose env.num_envs is null, on a GPU."""
CPU_ENVS = 256
"""Environments of a run whose env.num_envs is null, on CPU."""


@dataclass
class EnvConfig:
    """Which environment a run trains on and how many copies of it step at once."""

    name: str
    """Short name shown in logs and folder names (`navigation`, `cartpole`, ...)."""
    kind: EnvKind
    """`navigation` (built-in), `gymnasium` (a vector env), `isaaclab` (a registered task), `custom`."""
    num_envs: int | None
    """Environments stepped together; null picks 2048 on a GPU and 256 on CPU."""
    device: Device
    """`auto` (cuda when available), `cpu` or `cuda`."""
    gym_id: str | None
    """Gymnasium id such as `CartPole-v1` (kind `gymnasium` only)."""
    factory: str | None
    """`package.module:function` returning a BatchedEnv (kind `custom` only)."""
    params: dict[str, Any]
    """Keyword arguments for the environment's constructor (task parameters)."""
    task: str | None = None
    """Isaac Lab task id such as `Isaac-Cartpole` (kind `isaaclab` only)."""
    cfg: dict[str, Any] = field(default_factory=dict)
    """Settings of the Isaac Lab task's own config by path (`+env.cfg.episode_length_s=3`), applied
    through Isaac Lab's own override parser (kind `isaaclab` only)."""

    def check(self, source: str) -> None:
        """Reject a non-positive num_envs, and a missing gym_id or factory for its kind."""
        if self.num_envs is not None and self.num_envs <= 0:
            raise ConfigError(file=source, key="env.num_envs", value=self.num_envs,
                              rule="it must be a positive integer (or null for 2048 on GPU / 256 on CPU)",
                              fix="set env.num_envs=256, for example")
        if self.kind == "gymnasium" and not self.gym_id:
            raise ConfigError(file=source, key="env.gym_id", value=self.gym_id,
                              rule="an env of kind `gymnasium` needs a gymnasium id",
                              fix="set env.gym_id=CartPole-v1, for example")
        if self.kind == "isaaclab" and not self.task:
            raise ConfigError(file=source, key="env.task", value=self.task,
                              rule="an env of kind `isaaclab` needs an Isaac Lab task id",
                              fix="set env.task=Isaac-Cartpole, for example")
        if self.cfg and self.kind != "isaaclab":
            raise ConfigError(file=source, key="env.cfg", value=self.cfg,
                              rule="env.cfg sets an Isaac Lab task's own config; this env is of "
                                   f"kind `{self.kind}`",
                              fix="remove it (an env's own parameters are env.params.<name>)")
        if self.kind == "custom" and (not self.factory or ":" not in self.factory):
            raise ConfigError(file=source, key="env.factory", value=self.factory,
                              rule="an env of kind `custom` needs `package.module:function`",
                              fix="set env.factory=my_package.my_module:make_env")


@dataclass
class PPOConfig:
    """skrl PPO settings under skrl's own names (`lambda` becomes skrl 2.x's `gae_lambda`)."""

    learning_rate: float
    """Adam learning rate for policy and value networks."""
    discount_factor: float
    """Discount factor gamma, in (0, 1]."""
    gae_lambda: float = field(metadata={"yaml": "lambda"})
    """GAE lambda, in [0, 1]; the YAML key is `lambda`."""
    ratio_clip: float
    """Clip range of the PPO probability ratio."""
    value_clip: float
    """Clip range of the value prediction (0 disables it)."""
    entropy_loss_scale: float
    """Weight of the entropy bonus."""
    learning_epochs: int
    """Passes over each rollout."""
    mini_batches: int
    """Mini-batches per pass."""
    rollouts: int
    """Environment steps per environment between updates."""
    grad_norm_clip: float
    """Global gradient-norm clip (0 disables it)."""
    value_loss_scale: float
    """Weight of the value loss."""
    kl_threshold: float
    """Stop an update's epochs early above this KL divergence (0 disables it)."""
    time_limit_bootstrap: bool
    """Bootstrap the value at time-limit truncation."""
    normalize_observations: bool
    """Standardize observations with a running mean and variance (skrl's RunningStandardScaler)."""
    normalize_values: bool = False
    """Standardize the value targets likewise (skrl's value preprocessor): for tasks whose returns
    are large (Pendulum's reach -1,000)."""
    learning_rate_scheduler: Literal["KLAdaptiveLR"] | None = None
    """`KLAdaptiveLR`: skrl's schedule, which divides the learning rate by 1.5 after an epoch whose
    mean KL divergence is above twice `learning_rate_kl_threshold` and multiplies it by 1.5 below
    half of it (within [1e-6, 1e-2]); null keeps `learning_rate` fixed."""
    learning_rate_kl_threshold: float = 0.008
    """The KL divergence KLAdaptiveLR steers towards."""
    rewards_shaper_scale: float = 1.0
    """PPO learns from the reward times this (Isaac Lab's `rewards_shaper_scale`); the score and
    the logged returns are the reward's own."""
    value_refit_updates: int = 0
    """After a resume whose reward weights or discount differ from the state's last segment: reset
    the value normaliser and make the first this many updates value-only (run/refit.py); 0: off."""

    def check(self, source: str) -> None:
        """Reject a non-positive learning rate, ratio clip, epoch, mini-batch or rollout count; gamma
        outside (0, 1] or lambda outside [0, 1]; negative clips, scales or KL threshold."""
        positive = {"learning_rate": self.learning_rate, "ratio_clip": self.ratio_clip,
                    "learning_epochs": self.learning_epochs, "mini_batches": self.mini_batches,
                    "rollouts": self.rollouts}
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(file=source, key=f"ppo.{key}", value=value, rule="it must be > 0",
                                  fix=f"set ppo.{key} to a positive value")
        unit = {"discount_factor": (self.discount_factor, 0.0, 1.0),
                "lambda": (self.gae_lambda, 0.0, 1.0)}
        for key, (value, low, high) in unit.items():
            if not low < value <= high and not (key == "lambda" and value == 0.0):
                raise ConfigError(file=source, key=f"ppo.{key}", value=value,
                                  rule=f"it must lie in ({low}, {high}]", fix=f"set ppo.{key}=0.95, for example")
        if self.value_refit_updates < 0:
            raise ConfigError(file=source, key="ppo.value_refit_updates", value=self.value_refit_updates,
                              rule="it must be >= 0", fix="set ppo.value_refit_updates=0 (off) or more")
        if self.rewards_shaper_scale <= 0 or self.learning_rate_kl_threshold <= 0:
            key = "rewards_shaper_scale" if self.rewards_shaper_scale <= 0 else "learning_rate_kl_threshold"
            raise ConfigError(file=source, key=f"ppo.{key}", value=getattr(self, key),
                              rule="it must be > 0", fix=f"set ppo.{key} to a positive value")
        for key in ("value_clip", "entropy_loss_scale", "grad_norm_clip", "value_loss_scale", "kl_threshold"):
            if getattr(self, key) < 0:
                raise ConfigError(file=source, key=f"ppo.{key}", value=getattr(self, key),
                                  rule="it must be >= 0", fix=f"set ppo.{key} to 0 or more")


@dataclass
class NetworkConfig:
    """Sizes and activation of the policy and value MLPs."""

    policy_hidden_layer_sizes: list[int]
    """Hidden layer widths of the policy, input side first."""
    value_hidden_layer_sizes: list[int]
    """Hidden layer widths of the value function."""
    activation: Activation
    """Activation between hidden layers."""
    shared: bool = False
    """One trunk for policy and value (skrl's `separate: false`, Isaac Lab's usual): the hidden
    layers are computed once, with the policy's head and a value head on top. The two size lists
    must then be equal."""
    min_log_std: float = -5.0
    """Lower bound of a Gaussian policy's log standard deviation."""
    max_log_std: float = 1.0
    """Upper bound of a Gaussian policy's log standard deviation."""
    initial_log_std: float = 0.0
    """A Gaussian policy's log standard deviation before training."""

    def check(self, source: str) -> None:
        """Reject an empty list of hidden layer widths, or a width below 1; unequal lists for a
        shared trunk; log-std bounds that hold no value, or a start outside them."""
        for key in ("policy_hidden_layer_sizes", "value_hidden_layer_sizes"):
            sizes = getattr(self, key)
            if not sizes or any(s <= 0 for s in sizes):
                raise ConfigError(file=source, key=f"network.{key}", value=sizes,
                                  rule="it must be a non-empty list of positive widths",
                                  fix=f"set network.{key}=[256,128,64], for example")
        if self.shared and self.value_hidden_layer_sizes != self.policy_hidden_layer_sizes:
            raise ConfigError(
                file=source, key="network.value_hidden_layer_sizes",
                value=self.value_hidden_layer_sizes,
                rule=f"network.shared is true, so policy and value have one trunk, and the policy's "
                     f"is {self.policy_hidden_layer_sizes}",
                fix="set both size lists to the same widths, or network.shared=false")
        if not self.min_log_std <= self.initial_log_std <= self.max_log_std \
                or self.min_log_std == self.max_log_std:
            raise ConfigError(
                file=source, key="network.initial_log_std", value=self.initial_log_std,
                rule=f"it must lie within [min_log_std, max_log_std] = "
                     f"[{self.min_log_std}, {self.max_log_std}], a range wider than one value",
                fix="set network.min_log_std=-20.0 network.max_log_std=2.0 network.initial_log_std=0.0")


@dataclass
class RewardConfig:
    """Reward weights: reward = sum of scales[term] * term over the terms the environment exposes."""

    scales: dict[str, float]
    """Weight of each raw reward term, by term name."""


@dataclass
class ScoringConfig:
    """The run's score: weighted task metrics over the most recent finished episodes."""

    weights: dict[str, float]
    """Weight of each task metric (success_rate, termination_rate, episode_length, final_distance,
    return); never the shaped reward, which reward weights change."""
    min_episodes: int
    """The score at a point averages the most recent finished episodes of every environment, at
    least this many in all (ceil(min_episodes / num_envs) per environment, at least one)."""
    plateau_patience: int
    """Search: stop a trial whose score has not improved for this many reports (0 disables)."""
    plateau_min_delta: float
    """Search: an improvement smaller than this (score units) does not count."""
    drop: float
    """Search: stop a trial whose score falls this far (score units) below its recent best
    (0 disables)."""

    def check(self, source: str) -> None:
        """Reject negative stop settings, min_episodes below 1, and weights on anything but task metrics."""
        for key in ("plateau_patience", "plateau_min_delta", "drop"):
            if getattr(self, key) < 0:
                raise ConfigError(file=source, key=f"scoring.{key}", value=getattr(self, key),
                                  rule="it must be >= 0", fix=f"set scoring.{key}=0 to disable it")
        if self.min_episodes <= 0:
            raise ConfigError(file=source, key="scoring.min_episodes", value=self.min_episodes,
                              rule="it must be >= 1", fix="set scoring.min_episodes=1000, for example")
        if not self.weights:
            raise ConfigError(file=source, key="scoring.weights", value=self.weights,
                              rule="it must weight at least one task metric",
                              fix="set scoring.weights.success_rate=1.0, for example")
        for name, weight in self.weights.items():
            if not is_task_metric(name):
                raise ConfigError(
                    file=source, key=f"scoring.weights.{name}", value=weight,
                    rule=f"`{name}` is not a task metric; the score may weight only "
                         f"{', '.join(TASK_METRIC_TAGS)} and {TERMINATION_CAUSE_PREFIX}<term> (no "
                         "reward weight changes them, so trials "
                         "compare fairly; the shaped reward is logged, never scored)",
                    fix=f"drop scoring.weights.{name} or weight one of those")


@dataclass
class TrainConfig:
    """Length, seed and reporting of a run."""

    frames: int
    """Environment frames to train for (steps x environments)."""
    seed: int
    """Seed of torch, the environment and the sampler."""
    eval_frequency: int
    """Frames between two evaluation points (task metrics and score written to TensorBoard)."""
    threads: int | None
    """torch CPU threads of this process; null uses every core."""
    quiet: bool
    """No progress lines on stdout (a trial under the search sets it)."""
    progress_seconds: float
    """Seconds between two progress lines."""
    save_state: bool = False
    """Write state.pt (the whole training state, run/state.py) when the run completes or stops."""
    resume_from: str | None = None
    """state.pt of an earlier run to continue (same network shape); `frames` stays the total."""
    schedule: list[dict[str, Any]] | None = None
    """Steps [{until: FRAMES, values: {key: value}}] trained with their own values (run/schedule.py)."""

    def check(self, source: str) -> None:
        """Reject non-positive frames or eval_frequency, threads below 1, an empty resume_from."""
        for key in ("frames", "eval_frequency"):
            if getattr(self, key) <= 0:
                raise ConfigError(file=source, key=f"train.{key}", value=getattr(self, key),
                                  rule="it must be a positive number of frames",
                                  fix=f"set train.{key}=200000, for example")
        if self.threads is not None and self.threads <= 0:
            raise ConfigError(file=source, key="train.threads", value=self.threads,
                              rule="it must be >= 1 or null", fix="set train.threads=1")
        if self.resume_from is not None and not self.resume_from.strip():
            raise ConfigError(file=source, key="train.resume_from", value=self.resume_from,
                              rule="it must be a state.pt path or null", fix="set it to null")


@dataclass
class RunConfig:
    """One train_one run: everything in `config.yaml` of its run dir."""

    env: EnvConfig
    ppo: PPOConfig
    network: NetworkConfig
    reward: RewardConfig
    scoring: ScoringConfig
    train: TrainConfig
    run_dir: str | None
    """Output folder; null makes a fresh one under starter_kit_log/runs/."""
    mode: Literal["train", "eval", "export"]
    """`train`, `eval` (`checkpoint` for `episodes` episodes), `export` (run/export.py)."""
    checkpoint: str | None
    """model.pt to evaluate or export (mode=eval, mode=export)."""
    episodes: int
    """Episodes to evaluate in mode=eval."""
    experiment: dict[str, Any] = field(default_factory=dict)
    """Free-form notes of an exported preset (`+experiment=...`): where it came from."""

    def check(self, source: str, *, mini_batch_rule: bool = True) -> None:
        """Check every part, the mini-batch size (mode=train, `mini_batch_rule`), the checkpoint of
        mode=eval and `episodes`."""
        for part in (self.env, self.ppo, self.network, self.scoring, self.train):
            part.check(source)
        if self.mode == "train" and mini_batch_rule:  # eval trains nothing
            _mini_batch_check(self, source)
        if self.mode in ("eval", "export") and not self.checkpoint:
            raise ConfigError(file=source, key="checkpoint", value=self.checkpoint, rule=f"mode="
                              f"{self.mode} needs a checkpoint", fix="add checkpoint=PATH/model.pt")
        if self.episodes <= 0:
            raise ConfigError(file=source, key="episodes", value=self.episodes,
                              rule="it must be >= 1", fix="set episodes=100, for example")


MIN_MINI_BATCH = 32
"""Samples below which a PPO mini-batch gives gradients too noisy to compare configurations by."""
MINI_BATCH_KEYS: dict[str, int] = {"env.num_envs": 1, "ppo.rollouts": 1, "ppo.mini_batches": -1}
"""Keys the mini-batch rule reads together: +1 more, -1 fewer make it easier to meet."""


def _mini_batch_check(cfg: RunConfig, source: str) -> None:
    envs = cfg.env.num_envs or CPU_ENVS  # null: 256 on CPU, more on a GPU
    samples = cfg.ppo.rollouts * envs // cfg.ppo.mini_batches
    if samples < MIN_MINI_BATCH:
        fit = max(1, cfg.ppo.rollouts * envs // MIN_MINI_BATCH)
        raise ConfigError(
            file=source, key="ppo.mini_batches", value=cfg.ppo.mini_batches,
            rule=f"rollouts {cfg.ppo.rollouts} x {envs} environments / {cfg.ppo.mini_batches} "
                 f"mini-batches = {samples} samples per mini-batch, below {MIN_MINI_BATCH}",
            fix=f"set ppo.mini_batches={fit} or fewer (or more env.num_envs / ppo.rollouts)")


def run_config_from_plain(data: Mapping[str, Any], *, source: str,
                          mini_batch_rule: bool = True) -> RunConfig:
    """Check and convert a composed, resolved run config (a plain dict)."""
    cfg = build(RunConfig, data, path="", source=source)
    cfg.check(source, mini_batch_rule=mini_batch_rule)
    return cfg

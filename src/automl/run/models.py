"""skrl policy and value models built from `network.*`: MLPs with a Gaussian or categorical head."""

from __future__ import annotations

from typing import Any

import gymnasium
import torch
from skrl.models.torch import CategoricalMixin, DeterministicMixin, GaussianMixin, Model
from torch import nn

from automl.errors import ConfigError
from automl.schema import NetworkConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU, "relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "selu": nn.SELU,
    "gelu": nn.GELU,
}


def mlp(inputs: int, sizes: list[int], activation: str) -> nn.Sequential:
    """Hidden layers of widths `sizes`, each followed by `activation`; no output layer."""
    layers: list[nn.Module] = []
    for width in sizes:
        layers += [nn.Linear(inputs, width), ACTIVATIONS[activation]()]
        inputs = width
    return nn.Sequential(*layers)


class GaussianPolicy(GaussianMixin, Model):
    """Continuous actions: MLP mean, state-independent log standard deviation."""

    def __init__(self, observation_space: gymnasium.Space, action_space: gymnasium.Space,
                 device: torch.device, net: NetworkConfig) -> None:
        Model.__init__(self, observation_space=observation_space, action_space=action_space,
                       device=device)
        GaussianMixin.__init__(self, clip_actions=False, clip_log_std=True,
                               min_log_std=net.min_log_std, max_log_std=net.max_log_std,
                               role="policy")
        sizes = net.policy_hidden_layer_sizes
        self.net = mlp(self.num_observations, sizes, net.activation)
        self.mean = nn.Linear(sizes[-1], self.num_actions)
        self.log_std = nn.Parameter(torch.full((self.num_actions,), net.initial_log_std))

    def compute(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
        """The Gaussian head: the action mean, and the learned state-independent log std."""
        return self.mean(self.net(inputs["observations"])), {"log_std": self.log_std}


class CategoricalPolicy(CategoricalMixin, Model):
    """Discrete actions: MLP logits."""

    def __init__(self, observation_space: gymnasium.Space, action_space: gymnasium.Space,
                 device: torch.device, net: NetworkConfig) -> None:
        Model.__init__(self, observation_space=observation_space, action_space=action_space,
                       device=device)
        CategoricalMixin.__init__(self, unnormalized_log_prob=True, role="policy")
        sizes = net.policy_hidden_layer_sizes
        self.net = nn.Sequential(mlp(self.num_observations, sizes, net.activation),
                                 nn.Linear(sizes[-1], int(action_space.n)))

    def compute(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
        """The categorical head: unnormalised logits, one per action."""
        return self.net(inputs["observations"]), {}


class Value(DeterministicMixin, Model):
    """State value: MLP with one output."""

    def __init__(self, observation_space: gymnasium.Space, action_space: gymnasium.Space,
                 device: torch.device, sizes: list[int], activation: str) -> None:
        Model.__init__(self, observation_space=observation_space, action_space=action_space,
                       device=device)
        DeterministicMixin.__init__(self, clip_actions=False, role="value")
        self.net = nn.Sequential(mlp(self.num_observations, sizes, activation),
                                 nn.Linear(sizes[-1], 1))

    def compute(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
        """The value head: one state value per observation."""
        return self.net(inputs["observations"]), {}


class SharedGaussian(GaussianPolicy, DeterministicMixin):
    """Continuous actions and state value on one trunk (skrl's shared model, `separate: false`):
    the Gaussian policy with a value head beside its mean; the trunk runs once per batch of
    observations, for the policy's call and the value's after it."""

    def __init__(self, observation_space: gymnasium.Space, action_space: gymnasium.Space,
                 device: torch.device, net: NetworkConfig) -> None:
        GaussianPolicy.__init__(self, observation_space, action_space, device, net)
        DeterministicMixin.__init__(self, clip_actions=False, role="value")
        self.value_head = nn.Linear(net.policy_hidden_layer_sizes[-1], 1)
        self._trunk: tuple[torch.Tensor, torch.Tensor] | None = None

    def act(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
        """The policy's or the value's act, by role (the two mixins share the method's name)."""
        if role == "policy":
            return GaussianMixin.act(self, inputs, role=role)
        return DeterministicMixin.act(self, inputs, role=role)

    def compute(self, inputs: dict[str, Any], role: str = "") -> tuple[torch.Tensor, dict]:
        """The Gaussian head for role `policy`, the value head otherwise; a value call on the very
        observations of the policy call before it reuses that call's trunk output."""
        observations = inputs["observations"]
        if role == "policy":
            features = self.net(observations)
            self._trunk = (observations, features)
            return self.mean(features), {"log_std": self.log_std}
        cached, self._trunk = self._trunk, None
        features = cached[1] if cached is not None and cached[0] is observations \
            else self.net(observations)
        return self.value_head(features), {}


def build_models(net: NetworkConfig, observation_space: gymnasium.Space,
                 action_space: gymnasium.Space, device: torch.device) -> dict[str, Model]:
    """Policy (Gaussian for Box actions, categorical for Discrete) and value models: one model in
    both roles where `network.shared` (continuous actions only)."""
    discrete = isinstance(action_space, gymnasium.spaces.Discrete)
    if net.shared and not discrete:
        shared = SharedGaussian(observation_space, action_space, device, net)
        return {"policy": shared, "value": shared}
    if net.shared:
        raise ConfigError(file="conf/network or the command line", key="network.shared", value=True,
                          rule="a shared trunk is built for continuous actions; this env's are "
                               "discrete", fix="set network.shared=false")
    policy_cls = CategoricalPolicy if discrete else GaussianPolicy
    return {
        "policy": policy_cls(observation_space, action_space, device, net),
        "value": Value(observation_space, action_space, device, net.value_hidden_layer_sizes,
                       net.activation),
    }


def deterministic_action(policy: Model, observations: torch.Tensor) -> torch.Tensor:
    """The policy's most likely action (mean, or arg-max logit), for evaluation."""
    actions, outputs = policy.act({"observations": observations}, role="policy")
    if "mean_actions" in outputs:
        return outputs["mean_actions"]
    return outputs["net_output"].argmax(dim=-1, keepdim=True)

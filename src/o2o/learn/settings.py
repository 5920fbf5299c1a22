"""Typed settings of the O2O-DRL learner, with the paper's defaults (paper V-A).

d3rlpy style: a settings object is built (a preset, then ``key=value`` overrides from the
command line), handed to an algorithm, and the algorithm is fitted::

    settings = learner_settings("project", offline=["cql_weight=0.5"])
    result = train_offline(dataset, settings.offline, seed=0, steps=20_000)

``OfflineSettings`` and ``OnlineSettings`` keep the paper's values as their defaults; a preset
(``paper`` or ``project``) says which values a run starts from, and ``reward_credit`` how
outcomes become rewards (it is a property of the data and of the policies trained on it, so it
sits beside the two algorithms' settings, not inside them). The fields the paper leaves open
(number of offline steps, online episodes per batch, minibatch size, ...) have the project's
choice, made from measured learning curves (docs/learner.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from o2o.core.decpomdp import (
    CREDIT_NAMES,
    LAYOUT_NAMES,
    check_obs_layout,
    check_reward_credit,
    is_known_layout,
    is_reward_credit,
    is_v3,
)
from o2o.core.errors import UserError
from o2o.core.yaml_input import MAX_VALUE_CHARS, parse_yaml

# Hidden layer widths: at most MAX_HIDDEN_LAYERS layers of 1 .. MAX_HIDDEN_WIDTH units, so the
# largest network (8 x 1024^2 weights, about 34 MB as float32, a few times that with the
# critics, targets and Adam's moments) fits on any machine that runs the simulator.
MAX_HIDDEN_WIDTH = 1024
MAX_HIDDEN_LAYERS = 8
Hidden = Annotated[tuple[Annotated[int, Field(ge=1, le=MAX_HIDDEN_WIDTH)], ...],
                   Field(max_length=MAX_HIDDEN_LAYERS)]


ActorHead = Literal["plain", "self", "scorer", "set-scorer"]


def _check_rule_prior(value: tuple[float, ...] | None) -> tuple[float, ...] | None:
    if value is not None:
        if len(value) not in (4, 5, 6):
            raise ValueError("rule_prior is [local_margin, peer_margin, rel_power, slack_power] "
                             "or the same and the cap C (and the infeasible gap)")
        from o2o.schedulers.drl import RulePrior
        RulePrior(*value)   # refuses negative or infinite values
    return value


# The slack-reliable values whose log-weight the scorer adds to each candidate's score
# (``o2o.schedulers.drl.RulePrior``; a 5th value: the cap C, default 10; a 6th: the softer
# infeasible gap); None: no prior.
RulePriorValues = Annotated[tuple[float, ...] | None, AfterValidator(_check_rule_prior)]
CriticInput = Literal["own", "central", "pooled"]


class OfflineSettings(BaseModel):
    """Algorithm 1: discrete SAC + CQL regularizer + state-value critic V (eqs. 10-12), or one
    of the project's alternatives (``algorithm``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    hidden: Hidden = (64, 64)
    lr: Annotated[float, Field(gt=0, description="Adam learning rate of actor, Q and V")] = 3e-4
    gamma: Annotated[float, Field(ge=0, le=1, description="discount factor")] = 0.99
    tau: Annotated[float, Field(gt=0, le=1, description="target tracking rate (Alg. 1, line 7)")] = 0.0005
    batch_size: Annotated[int, Field(ge=1, description="minibatch rows per step")] = 128
    buffer_size: Annotated[int, Field(ge=1, description="rows kept from the data set (the most recent)")] = 1_000_000
    alpha: Annotated[float, Field(ge=0, description="entropy weight of the soft value")] = 0.05
    cql_weight: Annotated[float, Field(ge=0, description="lambda_c, weight of the CQL regularizer (eq. 10)")] = 0.1
    reward_norm: Literal["standard", "scale", "none"] = "standard"
    """How rewards are normalised over the data set: ``standard`` (r - mean) / std,
    ``scale`` r / std, ``none``. Statistics are over all rows (one per node per slot)."""
    eval_every: Annotated[int, Field(ge=0, description="steps between evaluations (0: none)")] = 0
    algorithm: Literal["sac-cql", "awr", "bc"] = "sac-cql"
    """``sac-cql``: Algorithm 1 as the paper gives it. ``awr``: advantage-weighted regression
    (AWAC/IQL style): V_omega by TD on the data (eq. 12 with a target V), the actor by
    max mean exp(A / awr_temperature) log pi(a|o), A = r + gamma V(o') - V(o). ``bc``: behaviour
    cloning of the logged actions (the same with every weight 1), a yardstick."""
    awr_temperature: Annotated[float, Field(gt=0, description="beta of exp(A / beta) (awr)")] = 1.0
    awr_max_weight: Annotated[float, Field(gt=0, description="clip of exp(A / beta) (awr)")] = 20.0
    actor_head: ActorHead = "plain"
    critic_input: CriticInput = "own"
    rule_prior: RulePriorValues = None
    """A scorer starting from, and residual on, slack-reliable at these values (None: none)."""


class OnlineSettings(BaseModel):
    """Algorithm 2: PPO clip objective (eq. 16) with GAE (eqs. 13-15) and critic MSE (eq. 19)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    hidden: Hidden = (64, 64)
    lr: Annotated[float, Field(gt=0, description="Adam learning rate of actor and critic")] = 3e-4
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.99
    gae_lambda: Annotated[float, Field(ge=0, le=1, description="GAE lambda (eq. 13)")] = 0.95
    clip: Annotated[float, Field(gt=0, description="PPO clip epsilon (eq. 18)")] = 0.2
    epochs: Annotated[int, Field(ge=1, description="K epochs per batch (Alg. 2, line 5)")] = 4
    episodes_per_batch: Annotated[int, Field(ge=1, description="episodes collected per update (D_k)")] = 8
    minibatch_size: Annotated[int, Field(ge=1, description="decision rows per gradient step")] = 1024
    reward_norm: Literal["batch", "fixed", "none"] = "batch"
    """``batch``: (r - mean) / std over each collected batch D_k (Alg. 2, line 3); ``fixed``:
    the offline data set's statistics, carried in the model; ``none``."""
    normalize_advantages: bool = True
    entropy_coef: Annotated[float, Field(ge=0)] = 0.0
    max_grad_norm: Annotated[float, Field(gt=0)] = 0.5
    actor_head: ActorHead = "plain"
    critic_input: CriticInput = "own"
    rule_prior: RulePriorValues = None
    """Online-only: the new actor's rule prior (as offline's). Fine-tuning keeps its actor's."""
    # Fine-tuning a model trained elsewhere (the generalist, docs/learner.md): the defaults leave
    # Algorithm 2 as it is.
    actor_lr: Annotated[float | None, Field(gt=0, description="Adam learning rate of the actor "
                                            "(None: lr)")] = None
    critic_lr: Annotated[float | None, Field(gt=0, description="Adam learning rate of the critic "
                                             "(None: lr)")] = None
    critic_warmup: Annotated[int, Field(ge=0, description="the first so many PPO updates fit only "
                                        "the critic; the actor, and its Adam state, stay as they are")] = 0
    kl_coef: Annotated[float, Field(ge=0, description="weight of KL(pi_start || pi) on the decision "
                                    "rows, pi_start the actor the run started from")] = 0.0
    fresh_critic: bool = False
    """Fine-tuning: replace the model's critic by a new one of ``critic_input`` (the actor's
    layer sizes, as a model file holds them), initialised from the training seed; it needs
    ``critic_warmup`` > 0 to be fitted before the actor reads it."""


def with_overrides(settings: BaseModel, pairs: list[str] | None,
                   option: str = "--set-hparam") -> BaseModel:
    """A copy of ``settings`` with ``key=value`` overrides (value read as YAML), validated.

    Raises ``UserError`` naming ``option``, the key and the accepted keys when a pair is not
    valid."""
    if not pairs:
        return settings
    data: dict[str, Any] = settings.model_dump()
    for text in pairs:
        if "=" not in text:
            raise UserError(f"{option} {text!r} must look like key=value, e.g. cql_weight=0.5")
        key, raw = (s.strip() for s in text.split("=", 1))
        if key == "reward_credit":
            raise UserError("reward_credit is not a hyper-parameter of one algorithm; set it with "
                            "--reward-credit (the data set and the model carry it)")
        if key not in type(settings).model_fields:
            known = ", ".join(sorted(type(settings).model_fields))
            raise UserError(f"unknown hyper-parameter {key!r} for {type(settings).__name__}; known: {known}")
        data[key] = parse_yaml(raw, f"{option} {key}", max_chars=MAX_VALUE_CHARS)
    try:
        return type(settings).model_validate(data)
    except ValidationError as err:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                         for e in err.errors())
        raise UserError(f"{option}: invalid hyper-parameter: {msgs}") from None


# slot, decision, node, counterfactual or counterfactual-w<w> (``o2o.core.decpomdp``).
RewardCredit = Annotated[str, AfterValidator(check_reward_credit)]
# A layout name (v1, v2, v3 and v3-k<k>, k probes: ``o2o.core.decpomdp.LAYOUT_NAMES``).
ObsLayout = Annotated[str, AfterValidator(check_obs_layout)]


class LearnerSettings(BaseModel):
    """Everything a run of the learner is set up with: the preset it started from, the reward
    credit and the observation layout (of the exported data set and of online-only;
    fine-tuning follows its model's), the heuristic whose logs the offline phase learns from,
    and the settings of Algorithms 1 and 2."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["project", "paper"] = "project"
    reward_credit: RewardCredit = "slot"
    obs_layout: ObsLayout = "o2o-obs-v1"
    log_heuristic: str = "ratc"
    log_tuned: bool = False
    """Log the heuristic at the values ``o2o tune`` chose for the network on validation
    episodes (where it is tunable: ``spread``, ``slack-reliable``), not at its defaults."""
    offline_steps: Annotated[int, Field(ge=1, description="offline gradient steps of a run")] = 10_000
    offline: OfflineSettings = OfflineSettings()
    online: OnlineSettings = OnlineSettings()


# The project's choices where the paper's values do not work on `paper-sim` (docs/learner.md has
# the measurements): a larger entropy weight and batch offline (alpha = 0.05 makes every node
# send to the same few fast nodes), and rewards credited to the decision's slot.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"reward_credit": "slot", "obs_layout": "o2o-obs-v1", "offline_steps": 10_000,
              "log_heuristic": "ratc", "offline": {}, "online": {}},
    # The project logs the best decentralized heuristic, spread (the paper logs its best, RATC).
    "project": {"reward_credit": "node", "obs_layout": "o2o-obs-v2", "offline_steps": 2_000,
                "log_heuristic": "spread",
                "offline": {"alpha": 0.2, "batch_size": 512, "actor_head": "scorer",
                            "algorithm": "awr", "gamma": 0.9, "hidden": (32, 32)},
                "online": {"actor_head": "scorer", "gamma": 0.9, "hidden": (32, 32)}},
}
# Fine-tuning a generalist (a model of ``o2o train generalist``) on one network, as
# ``o2o train online --model`` does unless --plain: the warm-up and lr chosen on validation
# episodes of network 0, the counterfactual credit on validation episodes of networks 0, 1, 2 and
# of network 0 at 40 and 50 nodes and with larger tasks (docs/learner.md, "Deploy without logs").
# The command's own overrides come after these.
GENERALIST_FINETUNE: dict[str, Any] = {
    "reward_credit": "counterfactual",
    "online": ("critic_warmup=2", "lr=0.001"),
}
DATA_EPISODES = 300      # RATC episodes of logs (600k rows on paper-sim)
OFFLINE_STEPS = 10_000   # from the offline learning curves: still rising at 4000, flat after ~6000
ONLINE_EPISODES = 400    # from the online curves: both online runs are on their plateau by ~400


def learner_settings(preset: str = "project", offline: list[str] | None = None,
                     online: list[str] | None = None, reward_credit: str | None = None,
                     obs_layout: str | None = None, log_heuristic: str | None = None,
                     log_tuned: bool | None = None, *,
                     options: tuple[str, str] = ("--set-hparam", "--set-hparam")) -> LearnerSettings:
    """The settings of ``preset`` (``project`` or ``paper``), then ``key=value`` overrides of
    the offline and online settings, then the reward credit, observation layout and logging
    heuristic (and whether it runs at its tuned values) if given. ``options`` name the
    command-line options of the offline and online overrides in a refusal."""
    if preset not in PRESETS:
        raise UserError(f"unknown settings {preset!r}; choose from {', '.join(PRESETS)}")
    base = PRESETS[preset]
    credit = reward_credit or base["reward_credit"]
    if not is_reward_credit(credit):
        raise UserError(f"reward credit must be {CREDIT_NAMES}, got {credit!r}")
    layout = obs_layout or base["obs_layout"]
    if not is_known_layout(layout):
        raise UserError(f"observation layout must be one of {LAYOUT_NAMES}, got {layout!r}")
    off = with_overrides(OfflineSettings(**base["offline"]), offline, options[0])
    on = with_overrides(OnlineSettings(**base["online"]), online, options[1])
    for name, part in (("offline", off), ("online", on)):
        if part.actor_head in ("scorer", "set-scorer") and layout == "o2o-obs-v1":
            raise UserError(f"the scorer actor ({name}) reads observation layout o2o-obs-v2 or "
                            "o2o-obs-v3; set --obs-layout o2o-obs-v2 (or v3) or actor_head=plain")
        if part.rule_prior is not None and part.actor_head not in ("scorer", "set-scorer"):
            raise UserError(f"the rule prior ({name}) is added to a scorer's candidate scores; set "
                            "actor_head=scorer or set-scorer")
        if is_v3(layout) and part.actor_head == "self":
            raise UserError(f"the self actor head ({name}) reads the node's one-hot, which "
                            "o2o-obs-v3 does not have; use actor_head=scorer or plain")
        if is_v3(layout) and part.critic_input == "central":
            raise UserError(f"the central critic ({name}) reads columns of o2o-obs-v1 and v2; "
                            "use critic_input=own with o2o-obs-v3")
        # (offline: the data set's layout decides, checked when training starts)
        if name == "online" and layout != "o2o-obs-v3" and part.critic_input == "pooled":
            raise UserError(f"the pooled critic ({name}) reads the candidate blocks of o2o-obs-v3; "
                            "set --obs-layout o2o-obs-v3, or use critic_input=own")
    return LearnerSettings(preset=preset, reward_credit=credit, obs_layout=layout,
                           log_heuristic=log_heuristic or base.get("log_heuristic", "ratc"),
                           log_tuned=base.get("log_tuned", False) if log_tuned is None else log_tuned,
                           offline_steps=base["offline_steps"], offline=off, online=on)

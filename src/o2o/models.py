"""Model files, manifests and the model store (paper VI-A). No PyTorch on this path.

A **model** is a folder (local path or any fsspec URL, e.g. ``memory://m``, ``s3://bucket/m``)::

    manifest.json        what the weights are for (below), written last
    model.safetensors    the actor's (and critic's) weights: plain tensors, no pickle

The manifest::

    {"format": "o2o-model", "format_version": 1, "version": 3,
     "obs_layout": "o2o-obs-v1", "nodes": 20, "obs_dim": 66, "n_actions": 21,
     "hidden": [64, 64], "activation": "relu", "actor_head": "plain", "critic_input": "own",
     "parts": ["actor", "critic"], "reward_credit": "decision",
     "reward_stats": {"mean": ..., "std": ...},
     "weights_file": "model.safetensors", "sha256": "<hex of the weights file>",
     "created": "2026-01-01T00:00:00Z", "training": {...free-form: phase, seed, settings...}}

``obs_layout`` is ``o2o-obs-v1`` (the paper's observation, 3N+6), ``o2o-obs-v2`` (v1 plus
what a node probes, 10N+6) or ``o2o-obs-v3`` (the probed features in fixed physical scales, no
one-hot, 7+10N; ``o2o.core.decpomdp``) or ``o2o-obs-v3-k<k>`` (v3 where a node probes only k
peers, 7+11N: the name records k, so does the manifest; it loads and runs like v3, with
``nodes_range`` from k + 1 up); ``actor_head`` is ``plain`` (an MLP with N+1 outputs),
``self`` (one more output added to the node's own action, layouts v1 and v2) or ``scorer`` /
``set-scorer`` (one MLP applied to each candidate's features, layouts v2 and v3);
``critic_input`` is ``own`` (the node's observation), ``central`` (plus the slot's global
state; training only) or ``pooled`` (layout v3: the node part and the mean and maximum over the
candidates of their blocks, ``pooled_critic_input``, whose size does not depend on N). A
manifest without ``critic_input`` (older models) reads as ``own``.

Where a model may run (fields written since layout v3; a manifest without them, an older model,
loads as before and runs at its ``nodes`` under any scenario):

* ``feature_scales`` (layout v3 only, required there): the ``FeatureScales`` its observations
  were built with; wherever it runs, its observations are built with these, never the
  scenario's.
* ``nodes_range``: ``[lo, hi]``, the numbers of nodes it runs at; ``[nodes, nodes]`` unless the
  actor's weights do not depend on N (a scorer head on layout v3). ``nodes`` is the N the
  weights were last trained at; with an ``own`` critic (its input size depends on N)
  fine-tuning runs at that N, with the ``pooled`` critic at any N of ``nodes_range``.
* ``rule_prior`` (optional, scorer heads only): ``{local_margin, peer_margin, rel_power,
  slack_power, cap[, gap]}``, the ``slack-reliable`` values whose log-weight is added to every
  candidate's score (``o2o.schedulers.drl.RulePrior``); absent: no prior (every older model).
* ``trained_ranges``: ``{field: [lo, hi]}``, the scenario ranges it was trained on
  (``TRAINED_FIELDS``; ``cores`` is [min, max] of the core counts, a scalar field [x, x]). A
  scenario whose range of a field is not inside is refused (``check_scenario_fits``).

Loading checks every field against the weights and against what the caller expects (number of
nodes, observation layout) and refuses a mismatch with a ``ModelError`` (a ``UserError``) that
says what is wrong and what to do.

A **model store** is a folder of versions ``v000001/``, ``v000002/``, ... each a model folder;
a version counts once its manifest is written. ``ModelStore.latest()`` is what a node hot-swaps
to.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
from pathlib import Path
import shutil
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from o2o.core.decpomdp import (
    CANDIDATE_FEATURES,
    SCORER_HEADS,
    SET_FEATURES,
    CRITIC_INPUTS,
    LAYOUT_NAMES,
    OBS_LAYOUT_V2,
    OBS_LAYOUT_V3,
    OBS_LAYOUT_V3K,
    OBS_LAYOUT_VERSION,
    FeatureScales,
    critic_dim,
    is_known_layout,
    is_probed,
    is_v3,
    layout_probes,
    obs_dim,
)
from o2o.core.errors import UserError
from o2o.core.scenario import MAX_NODES, Scenario

MODEL_FORMAT = "o2o-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
PARTS = ("actor", "critic")
HEADS = ("plain", "self", *SCORER_HEADS)  # scorer, set-scorer: one network per candidate (v2, v3)
# The scenario fields a model records the ranges of (``trained_ranges``) and is checked against.
TRAINED_FIELDS = ("arrival_prob", "task_size_kb", "complexity", "deadline_s", "node_fail_rate",
                  "link_fail_rate", "link_rate_mbps", "cores", "core_hz", "slot_s", "queue_coef")
_VERSION_DIR = re.compile(r"^v(\d{6})$")


class ModelError(UserError):
    """A model cannot be used as asked; the message says why and what to change."""


@dataclass
class Model:
    """A loaded model: its manifest and its weights as float32 numpy arrays."""

    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray]
    url: str

    @property
    def nodes(self) -> int:
        return int(self.manifest["nodes"])

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(int(h) for h in self.manifest["hidden"])

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def actor_head(self) -> str:
        return self.manifest.get("actor_head", "plain")

    @property
    def self_head(self) -> bool:
        return self.actor_head == "self"

    @property
    def obs_layout(self) -> str:
        return self.manifest["obs_layout"]

    @property
    def critic_input(self) -> str:
        return self.manifest.get("critic_input", "own")

    @property
    def reward_credit(self) -> str | None:
        """How the training rewards were credited (None: not recorded, e.g. an older model)."""
        return self.manifest.get("reward_credit")

    @property
    def reward_stats(self) -> dict[str, float] | None:
        """The offline data set's reward statistics (older models kept them under training)."""
        return self.manifest.get("reward_stats") or self.manifest.get("training", {}).get("reward_stats")

    @property
    def has_critic(self) -> bool:
        return "critic" in self.manifest["parts"]

    @property
    def feature_scales(self) -> FeatureScales | None:
        """The scales its observations are built with (layout v3), None for v1 and v2."""
        scales = self.manifest.get("feature_scales")
        return None if scales is None else FeatureScales.model_validate(scales)

    @property
    def rule_prior(self) -> dict[str, float] | None:
        """The rule prior of a scorer (``o2o.schedulers.drl.RulePrior``'s fields), None without."""
        return self.manifest.get("rule_prior")

    @property
    def nodes_range(self) -> tuple[int, int]:
        return nodes_range(self.manifest)

    @property
    def trained_ranges(self) -> dict[str, list[float]] | None:
        return self.manifest.get("trained_ranges")

    def layers(self, part: str = "actor") -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W, b), ...] of one part, W of shape (out, in)."""
        k, out = 0, []
        while f"{part}.l{k}.weight" in self.arrays:
            out.append((self.arrays[f"{part}.l{k}.weight"], self.arrays[f"{part}.l{k}.bias"]))
            k += 1
        return out


def nodes_range(manifest: dict[str, Any]) -> tuple[int, int]:
    """The numbers of nodes a model runs at: its ``nodes_range``, or [nodes, nodes]."""
    lo, hi = manifest.get("nodes_range") or (manifest["nodes"], manifest["nodes"])
    return int(lo), int(hi)


def scenario_ranges(scenario: Scenario) -> dict[str, list[float]]:
    """``{field: [lo, hi]}`` of the ``TRAINED_FIELDS`` of a scenario (what a model trained on it
    records as ``trained_ranges``)."""
    out = {}
    for field in TRAINED_FIELDS:
        value = getattr(scenario, field)
        if field == "cores":
            value = (min(value), max(value))
        lo, hi = value if isinstance(value, tuple) else (value, value)
        out[field] = [float(lo), float(hi)]
    return out


def hull_ranges(a: dict[str, list[float]] | None, b: dict[str, list[float]] | None) -> dict[str, list[float]] | None:
    """The smallest ranges holding both ``a`` and ``b`` (a model fine-tuned on ``b`` from one
    trained on ``a`` was trained on both); a field in one only keeps its range; None if both
    are None."""
    if a is None or b is None:
        return a if b is None else b
    return {f: [min(a[f][0], b[f][0]), max(a[f][1], b[f][1])] if f in a and f in b else list((a.get(f) or b[f]))
            for f in dict.fromkeys([*a, *b])}


def node_range_refusal(layout: str, head: str, nodes: int, lo: Any, hi: Any) -> str | None:
    """Why ``nodes_range`` [lo, hi] cannot be that of a model of ``nodes`` nodes (None: it can)."""
    if not (_whole(lo) and _whole(hi) and 2 <= lo <= nodes <= hi <= MAX_NODES):
        return f"must be [lo, hi], whole numbers with 2 <= lo <= {nodes} (nodes) <= hi <= {MAX_NODES}"
    k = layout_probes(layout)
    if k is not None and lo < k + 1:
        return f"must start at k + 1 = {k + 1} or above: a node of {layout} probes k = {k} peers"
    if (lo, hi) != (nodes, nodes) and not (is_v3(layout) and head in SCORER_HEADS):
        return (f"must be [{nodes}, {nodes}]: only a scorer head on layout {OBS_LAYOUT_V3} has weights "
                f"that do not depend on N (this model: {head} head, {layout})")
    return None


def _ranges_refusal(ranges: Any) -> str | None:
    """Why ``trained_ranges`` is not a valid ``{field: [lo, hi]}`` (None: it is)."""
    if not isinstance(ranges, dict):
        return "must be a mapping {field: [lo, hi]}"
    for field, value in ranges.items():
        if field not in TRAINED_FIELDS:
            return f"names {field!r}, which is not one of {', '.join(TRAINED_FIELDS)}"
        if not (isinstance(value, (list, tuple)) and len(value) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in value)
                and value[0] <= value[1]):
            return f"gives {field} as {value!r}, not a range [lo, hi] with lo <= hi"
    return None


def check_nodes(model: "Model | dict[str, Any]", nodes: int, url: str | None = None) -> None:
    """Refuse (``ModelError``) running ``model`` (a ``Model`` or a manifest) on ``nodes`` nodes
    when its ``nodes_range`` does not hold that number."""
    m = model.manifest if isinstance(model, Model) else model
    url = url or (model.url if isinstance(model, Model) else "")
    lo, hi = nodes_range(m)
    if lo <= nodes <= hi:
        return
    if lo == hi:
        raise ModelError(f"model {url} is for {lo} nodes, but the network has {nodes}: use a model "
                         f"trained on this scenario (or set nodes={lo})")
    raise ModelError(f"model {url} runs on {lo} to {hi} nodes (its nodes_range), but the network has "
                     f"{nodes}: set nodes inside [{lo}, {hi}], or use a model trained at {nodes} nodes")


def check_scenario_fits(model: "Model | dict[str, Any]", scenario: Scenario, url: str | None = None) -> None:
    """Refuse (``ModelError``) binding ``model`` (a ``Model`` or a manifest) to ``scenario``
    when its number of nodes is outside the model's ``nodes_range`` or the range of one of its
    ``trained_ranges`` fields is not inside the range the model was trained on; the message
    names the field and both ranges. A model without ``trained_ranges`` (older manifests)
    passes the range check. Called wherever a model is bound to a scenario: the ``drl`` rule
    (simulate, evaluate, testbed nodes) and online fine-tuning."""
    m = model.manifest if isinstance(model, Model) else model
    url = url or (model.url if isinstance(model, Model) else "")
    check_nodes(m, scenario.nodes, url)
    have = scenario_ranges(scenario)
    for field, (lo, hi) in (m.get("trained_ranges") or {}).items():
        s_lo, s_hi = have[field]
        if s_lo < lo or s_hi > hi:
            raise ModelError(f"model {url} was trained on {field} in [{lo:g}, {hi:g}], but scenario "
                             f"{scenario.name!r} has {field} [{s_lo:g}, {s_hi:g}], outside it: run it on "
                             f"a scenario inside its trained ranges, or train (or fine-tune) a model on "
                             f"this one")


def _fs(url: str):
    if not str(url).strip():
        raise ModelError("the model location is empty; give a folder or an fsspec URL")
    try:
        return fsspec.core.url_to_fs(str(url))
    except (ValueError, ImportError) as exc:  # an unknown protocol, or its package is missing
        raise ModelError(f"cannot use model location {url}: {exc}") from None


def _join(path: str, name: str) -> str:
    return path.rstrip("/") + "/" + name


def expected_shapes(nodes: int, hidden: tuple[int, ...], parts=PARTS, actor_head: str = "plain",
                    obs_layout: str = OBS_LAYOUT_VERSION,
                    critic_input: str = "own") -> dict[str, tuple[int, ...]]:
    """The array names and shapes a model for ``nodes`` with ``hidden`` layers holds."""
    shapes: dict[str, tuple[int, ...]] = {}
    for part in parts:
        if part == "critic":
            in_dim, out_dim = critic_dim(nodes, obs_layout, critic_input), 1
        elif actor_head in SCORER_HEADS:
            in_dim, out_dim = SET_FEATURES if actor_head == "set-scorer" else CANDIDATE_FEATURES, 1
        else:
            in_dim, out_dim = obs_dim(nodes, obs_layout), nodes + 1 + int(actor_head == "self")
        sizes = [in_dim, *hidden, out_dim]
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"{part}.l{k}.weight"] = (b, a)
            shapes[f"{part}.l{k}.bias"] = (b,)
    return shapes


def save_model(url: str, arrays: dict[str, np.ndarray], *, nodes: int, hidden: tuple[int, ...],
               actor_head: str = "plain", obs_layout: str = OBS_LAYOUT_VERSION,
               critic_input: str = "own", version: int = 1, reward_credit: str | None = None,
               reward_stats: dict[str, float] | None = None,
               training: dict[str, Any] | None = None,
               feature_scales: FeatureScales | dict[str, float] | None = None,
               nodes_range: tuple[int, int] | list[int] | None = None,
               trained_ranges: dict[str, list[float]] | None = None,
               rule_prior: dict[str, float] | None = None) -> dict[str, Any]:
    """Write a model folder at ``url``: the weights, then the manifest. Returns the manifest.

    ``reward_credit`` and ``reward_stats`` say how the rewards the model was trained on were
    made and normalised; online fine-tuning continues with the same (None: not recorded).
    ``feature_scales`` (layout v3; default ``FeatureScales()``), ``nodes_range`` (default
    [nodes, nodes]) and ``trained_ranges`` (default: not recorded) say where it may run."""
    hidden = tuple(int(h) for h in hidden)
    parts = tuple(p for p in PARTS if f"{p}.l0.weight" in arrays)
    if "actor" not in parts:
        raise ValueError("a model needs the actor's weights (actor.l0.weight, ...)")
    if actor_head in SCORER_HEADS and not is_probed(obs_layout):
        raise ValueError("the scorer head reads observation layout v2 or v3")
    if actor_head == "self" and is_v3(obs_layout):
        raise ValueError("the self head reads the one-hot of layouts v1 and v2")
    scales = None
    if is_v3(obs_layout):
        scales = FeatureScales.model_validate(feature_scales or {}).model_dump()
    elif feature_scales is not None:
        raise ValueError(f"feature scales belong to layout {OBS_LAYOUT_V3}, not {obs_layout}")
    lo, hi = (int(nodes), int(nodes)) if nodes_range is None else tuple(nodes_range)
    why = node_range_refusal(obs_layout, actor_head, int(nodes), lo, hi)
    if why:
        raise ValueError(f"nodes_range {[lo, hi]} {why}")
    if trained_ranges is not None and _ranges_refusal(trained_ranges):
        raise ValueError(f"trained_ranges {_ranges_refusal(trained_ranges)}")
    if rule_prior is not None and (actor_head not in SCORER_HEADS or prior_refusal(rule_prior)):
        raise ValueError(f"rule_prior {rule_prior!r}: {prior_refusal(rule_prior) or 'needs a scorer head'}")
    want = expected_shapes(nodes, hidden, parts, actor_head, obs_layout, critic_input)
    if set(arrays) != set(want):
        raise ValueError(f"weights {sorted(arrays)} do not match the layout {sorted(want)}")
    for name, shape in want.items():
        if tuple(arrays[name].shape) != shape:
            raise ValueError(f"{name} has shape {arrays[name].shape}, expected {shape}")
    bad = _not_finite(arrays)
    if bad:
        raise ModelError(f"weights {', '.join(bad)} hold NaN or infinite values; no model was written "
                         f"to {url} (the training diverged: check the data set and the settings)")
    payload = _st_save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()})
    manifest = {
        "format": MODEL_FORMAT, "format_version": FORMAT_VERSION, "version": int(version),
        "obs_layout": obs_layout, "nodes": int(nodes), "obs_dim": obs_dim(nodes, obs_layout),
        "n_actions": int(nodes) + 1, "hidden": list(hidden), "activation": "relu",
        "actor_head": actor_head, "critic_input": critic_input, "parts": list(parts),
        "reward_credit": reward_credit, "reward_stats": reward_stats, "weights_file": WEIGHTS,
        "nodes_range": [lo, hi],
        "sha256": hashlib.sha256(payload).hexdigest(),
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "training": training or {},
    }
    if scales is not None:
        manifest["feature_scales"] = scales
    if rule_prior is not None:
        manifest["rule_prior"] = {k: float(v) for k, v in rule_prior.items()}
    if trained_ranges is not None:
        manifest["trained_ranges"] = {f: [float(a), float(b)] for f, (a, b) in trained_ranges.items()}
    fs, path = _fs(url)
    fs.makedirs(path, exist_ok=True)
    with fs.open(_join(path, WEIGHTS), "wb") as f:
        f.write(payload)
    with fs.open(_join(path, MANIFEST), "wb") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def _read_manifest(fs, path: str, url: str) -> dict[str, Any]:
    where = _join(path, MANIFEST)
    if not fs.exists(where):
        raise ModelError(f"no model at {url}: {MANIFEST} is missing (train one with "
                         "'o2o train offline', or point --model at a model folder or a store)")
    try:
        with fs.open(where, "rb") as f:
            manifest = json.loads(f.read().decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"model {url}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MODEL_FORMAT:
        raise ModelError(f"model {url}: {MANIFEST} is not an {MODEL_FORMAT} manifest")
    return manifest


#: How a model shipped with the package is named: ``pretrained:NAME`` (``o2o/pretrained/NAME``).
PRETRAINED = "pretrained:"


def pretrained_models() -> list[str]:
    """The names of the models shipped with the package."""
    from importlib.resources import files

    root = files("o2o") / "pretrained"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / MANIFEST).is_file())


def pretrained_path(url: str) -> str:
    """``url`` itself, or for ``pretrained:NAME`` the folder of that shipped model."""
    if not url.startswith(PRETRAINED):
        return url
    from importlib.resources import files

    name = url[len(PRETRAINED):]
    if name not in pretrained_models():
        raise ModelError(f"no shipped model {name!r}: the package has {', '.join(pretrained_models()) or 'none'} "
                         f"(use pretrained:NAME, or a model folder)")
    return str(files("o2o") / "pretrained" / name)


def as_store(url: str, folder: str | Path, nodes: int | None = None, scenario: Scenario | None = None) -> str:
    """A model store for ``url``, as the testbed's nodes load models (``{store}/v000001``, ...):
    ``url`` itself when it is not a model folder; a local model folder (or ``pretrained:NAME``)
    is copied, once, as version 1 of a store under ``folder`` named by its weights' checksum,
    after it is checked for ``nodes`` and ``scenario`` (nothing is written for a model that
    cannot run there)."""
    path = pretrained_path(str(url))
    fs, p = _fs(path)
    if not fs.exists(_join(p, MANIFEST)):
        return str(url)
    model = load_model(path, nodes=nodes)
    if scenario is not None:
        check_scenario_fits(model, scenario)
    if not Path(path).is_dir():
        raise ModelError(f"{url} is a model folder that is not on this machine; the testbed loads "
                         f"models from a store: publish it to one (o2o testbed trainer) and give that")
    store = Path(folder) / f"store-{model.manifest['sha256'][:16]}"
    if not (store / "v000001" / MANIFEST).is_file():
        shutil.copytree(path, store / "v000001", dirs_exist_ok=True)
    return str(store)


def load_model(url: str, *, nodes: int | None = None, obs_layout: str | None = None,
               need_critic: bool = False) -> Model:
    """Load and check a model folder, or the latest version when ``url`` is a model store.

    Refuses (``ModelError``) a missing file, a bad checksum, an observation layout this o2o
    does not build (or not ``obs_layout`` when given), a number of nodes ``nodes`` outside the
    model's ``nodes_range`` (its ``nodes`` when the manifest has none), weights that do not fit
    the manifest, and a model without a critic (or asked for at another N than its weights')
    when ``need_critic``. Models of layouts v1 (the paper's observation), v2 and v3 load; each
    runs on the layout it was trained on (v3 with its own ``feature_scales``)."""
    url = pretrained_path(str(url))
    fs, path = _fs(url)
    if not fs.exists(_join(path, MANIFEST)):
        store = ModelStore(url)
        latest = store.latest()
        if latest is not None:
            return load_model(store.url_of(latest), nodes=nodes, obs_layout=obs_layout,
                              need_critic=need_critic)
    m = _read_manifest(fs, path, url)
    if m.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"model {url} has format version {m.get('format_version')}; this o2o "
                         f"reads version {FORMAT_VERSION}: retrain or re-export the model")
    for key in ("version", "obs_layout", "nodes", "obs_dim", "n_actions", "hidden", "parts",
                "weights_file", "sha256"):
        if key not in m:
            raise ModelError(f"model {url}: manifest lacks {key!r}")
    _check_manifest_types(m, url)
    layout = m["obs_layout"]
    if not is_known_layout(layout):
        raise ModelError(f"model {url} was trained on observation layout {layout!r}, which this o2o "
                         f"does not build ({LAYOUT_NAMES}): retrain the model")
    if obs_layout is not None and layout != obs_layout:
        raise ModelError(f"model {url} was trained on observation layout {layout!r}, but "
                         f"{obs_layout!r} is asked for: retrain the model on that layout")
    n = int(m["nodes"])
    head = m.get("actor_head", "plain")
    if "nodes_range" in m:
        rng = m["nodes_range"]
        why = (node_range_refusal(layout, head, n, *rng) if isinstance(rng, list) and len(rng) == 2
               else "must be [lo, hi]")
        if why:
            raise ModelError(f"model {url}: manifest field nodes_range {rng!r} {why}")
    if "trained_ranges" in m and _ranges_refusal(m["trained_ranges"]):
        raise ModelError(f"model {url}: manifest field trained_ranges {_ranges_refusal(m['trained_ranges'])}")
    if "rule_prior" in m and (head not in SCORER_HEADS or prior_refusal(m["rule_prior"])):
        raise ModelError(f"model {url}: manifest field rule_prior {m['rule_prior']!r} "
                         f"{prior_refusal(m['rule_prior']) or 'belongs to a scorer head'}")
    if is_v3(layout):
        try:
            FeatureScales.model_validate(m.get("feature_scales"))
        except ValueError as exc:
            raise ModelError(f"model {url}: a {OBS_LAYOUT_V3} manifest needs feature_scales, the "
                             f"positive constants its observations are built with "
                             f"({str(exc).splitlines()[0]}); retrain or re-export the model") from None
    elif "feature_scales" in m:
        raise ModelError(f"model {url}: feature_scales belong to layout {OBS_LAYOUT_V3}, not {layout}")
    if nodes is not None:
        check_nodes(m, nodes, url)
        if need_critic and nodes != n and m.get("critic_input", "own") != "pooled":
            raise ModelError(f"model {url}: its critic reads the observation of {n} nodes, so online "
                             f"fine-tuning runs it at {n} nodes, not {nodes} (the actor alone runs "
                             f"at any N in its nodes_range; a model with critic_input pooled "
                             f"fine-tunes at any N there)")
    if m["obs_dim"] != obs_dim(n, layout) or m["n_actions"] != n + 1:
        raise ModelError(f"model {url}: manifest says obs_dim {m['obs_dim']} and "
                         f"{m['n_actions']} actions, which do not fit {n} nodes")
    if m.get("activation", "relu") != "relu":
        raise ModelError(f"model {url}: activation {m['activation']!r} is not supported (relu)")
    if head not in HEADS:
        raise ModelError(f"model {url}: actor_head {head!r} is not one of {', '.join(HEADS)}")
    if head in SCORER_HEADS and not is_probed(layout):
        raise ModelError(f"model {url}: the scorer head needs an observation layout with what a node "
                         f"probes ({OBS_LAYOUT_V2}, {OBS_LAYOUT_V3} or {OBS_LAYOUT_V3K}<k>), not {layout!r}")
    if head == "self" and is_v3(layout):
        raise ModelError(f"model {url}: the self head reads the one-hot of layouts v1 and v2, not {layout}")
    critic_input = m.get("critic_input", "own")
    if critic_input not in CRITIC_INPUTS:
        raise ModelError(f"model {url}: critic_input {critic_input!r} is not one of "
                         f"{', '.join(CRITIC_INPUTS)}")
    parts = tuple(m["parts"])
    if "actor" not in parts or not set(parts) <= set(PARTS):
        raise ModelError(f"model {url}: parts {list(parts)} must include 'actor' (and may include 'critic')")
    if need_critic and "critic" not in parts:
        raise ModelError(f"model {url} has no critic; online fine-tuning needs the actor and the "
                         "critic (train offline first, or use --from-scratch)")
    weights = _join(path, m["weights_file"])
    if not fs.exists(weights):
        raise ModelError(f"model {url}: weights file {m['weights_file']} is missing")
    with fs.open(weights, "rb") as f:
        payload = f.read()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != m["sha256"]:
        raise ModelError(f"model {url}: checksum mismatch (manifest {m['sha256'][:12]}..., file "
                         f"{digest[:12]}...): the weights file is corrupt or was replaced")
    try:
        arrays = _st_load(payload)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"model {url}: weights file is not valid safetensors ({exc})") from None
    hidden = tuple(int(h) for h in m["hidden"])
    try:
        want = expected_shapes(n, hidden, parts, head, layout, critic_input)
    except ValueError as exc:  # a critic input the layout does not have (pooled on v1, ...)
        raise ModelError(f"model {url}: {exc}; retrain the model") from None
    if set(arrays) != set(want):
        raise ModelError(f"model {url}: weights {sorted(arrays)} do not match the manifest's "
                         f"layers {sorted(want)}")
    for name, shape in want.items():
        if tuple(arrays[name].shape) != shape:
            raise ModelError(f"model {url}: {name} has shape {tuple(arrays[name].shape)}, the "
                             f"manifest implies {shape}")
    bad = _not_finite(arrays)
    if bad:
        raise ModelError(f"model {url}: weights {', '.join(bad)} hold NaN or infinite values; it "
                         "cannot decide (retrain it)")
    return Model(manifest=m, arrays={k: v.astype(np.float32, copy=False) for k, v in arrays.items()},
                 url=url)


PRIOR_FIELDS = ("local_margin", "peer_margin", "rel_power", "slack_power", "cap")


def prior_refusal(prior: Any) -> str | None:
    """Why a rule prior's values (a manifest's ``rule_prior``, ``o2o.schedulers.drl.RulePrior``)
    are not valid (None when they are)."""
    if not isinstance(prior, dict) or not set(PRIOR_FIELDS) <= set(prior) <= {*PRIOR_FIELDS, "gap"}:
        return f"must have the fields {', '.join(PRIOR_FIELDS)} (and may have gap)"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
               for v in prior.values()) or prior["cap"] <= 0:
        return "must hold finite values >= 0 and a cap > 0"
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_manifest_types(m: dict[str, Any], url: str) -> None:
    """Every field the loader reads has the type o2o writes (a manifest edited by hand or
    written by something else is refused in one line, not met half-way)."""
    checks = [
        ("nodes", _whole(m["nodes"]) and 2 <= m["nodes"] <= MAX_NODES, f"a whole number 2..{MAX_NODES}"),
        ("obs_dim", _whole(m["obs_dim"]), "a whole number"),
        ("n_actions", _whole(m["n_actions"]), "a whole number"),
        ("hidden", isinstance(m["hidden"], list) and len(m["hidden"]) <= 64
         and all(_whole(h) and 1 <= h <= 1 << 20 for h in m["hidden"]), "a list of layer widths"),
        ("parts", isinstance(m["parts"], list) and all(isinstance(p, str) for p in m["parts"]),
         "a list of names"),
        ("weights_file", isinstance(m["weights_file"], str)
         and re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", m["weights_file"]) is not None
         and m["weights_file"] not in (".", ".."), "a file name in the model folder"),
        ("sha256", isinstance(m["sha256"], str), "a checksum"),
        ("obs_layout", isinstance(m["obs_layout"], str), "a layout name"),
    ]
    checks += [(key, isinstance(m[key], str), "a name")
               for key in ("activation", "actor_head", "critic_input") if key in m]
    for key, ok, what in checks:
        if not ok:
            raise ModelError(f"model {url}: manifest field {key} is {m[key]!r}, not {what}")


def _not_finite(arrays: dict[str, np.ndarray]) -> list[str]:
    return sorted(k for k, v in arrays.items() if not np.all(np.isfinite(v)))


class ModelStore:
    """Versions of one model line, ``{url}/v000001``, ... (local folder or fsspec URL)."""

    def __init__(self, url: str):
        self.url = str(url).rstrip("/")
        self.fs, self.path = _fs(self.url)

    def url_of(self, version: int) -> str:
        return f"{self.url}/v{int(version):06d}"

    def versions(self) -> list[int]:
        """Published versions (those with a manifest), ascending."""
        if not self.fs.exists(self.path):
            return []
        found = []
        for entry in self.fs.ls(self.path, detail=False):
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            match = _VERSION_DIR.match(name)
            if match and self.fs.exists(_join(_join(self.path, name), MANIFEST)):
                found.append(int(match.group(1)))
        return sorted(found)

    def latest(self) -> int | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def publish(self, arrays: dict[str, np.ndarray], **model) -> tuple[int, str]:
        """Write the next version (``model``: the keyword arguments of ``save_model``) and
        return its number and the SHA-256 of its weights."""
        version = (self.latest() or 0) + 1
        manifest = save_model(self.url_of(version), arrays, version=version, **model)
        return version, manifest["sha256"]

    def load(self, version: int | None = None, **checks) -> Model:
        """A version (default: the latest), checked as ``load_model`` does."""
        if version is None:
            version = self.latest()
            if version is None:
                raise ModelError(f"model store {self.url} has no versions yet")
        elif version not in self.versions():
            raise ModelError(f"model store {self.url} has no version {version} "
                             f"(has {self.versions() or 'none'})")
        return load_model(self.url_of(version), **checks)

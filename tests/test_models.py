"""Model files, manifests, the store, and the numpy actor."""

import json
import subprocess
import sys
import textwrap

import fsspec
import numpy as np
import pytest
import torch

from o2o.learn.nets import Actor, Critic
from o2o.learn.policy import Policy
from o2o.models import ModelError, ModelStore, load_model, save_model
from o2o.schedulers.drl import NumpyActor, masked_softmax, sample_inverse_cdf

N = 4
D = 3 * N + 6


def make_policy(seed=0, self_head=False):
    torch.manual_seed(seed)
    return Actor(D, N + 1, (64, 64), self_head), Critic(D, (64, 64))


def random_inputs(m=64, seed=1):
    rng = np.random.default_rng(seed)
    obs = rng.random((m, D)).astype(np.float32)
    obs[:, :N] = np.eye(N)[rng.integers(0, N, m)]
    mask = rng.random((m, N + 1)) < 0.6
    mask[np.arange(m), rng.integers(0, N + 1, m)] = True
    return obs, mask


@pytest.fixture(params=["local", "memory"])
def url(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "model")
        return
    name = f"memory://models-{request.node.name.replace('[', '-').replace(']', '')}"
    yield name
    fs, path = fsspec.core.url_to_fs(name)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.mark.parametrize("self_head", [False, True])
def test_round_trip_and_numpy_actor_equals_torch(url, self_head):
    actor, critic = make_policy(self_head=self_head)
    manifest = Policy(actor, critic).save(url, training={"phase": "offline", "seed": 0})
    assert manifest["nodes"] == N and manifest["obs_dim"] == D and manifest["n_actions"] == N + 1
    assert manifest["hidden"] == [64, 64] and manifest["obs_layout"] == "o2o-obs-v1"
    assert len(manifest["sha256"]) == 64 and manifest["created"].endswith("Z")
    policy2, model = Policy.load(url, nodes=N, need_critic=True)
    actor2, critic2 = policy2.actor, policy2.critic
    assert model.manifest["training"] == {"phase": "offline", "seed": 0}
    for a, b in zip(actor.parameters(), actor2.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(critic.parameters(), critic2.parameters()):
        assert torch.equal(a, b)
    obs, mask = random_inputs()
    with torch.no_grad():
        p_torch = actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
    p_np = NumpyActor.from_model(load_model(url)).probs(obs, mask)
    np.testing.assert_allclose(p_np, p_torch, atol=1e-5)
    assert np.all(p_np[~mask] == 0.0)
    np.testing.assert_allclose(p_np.sum(1), 1.0, atol=1e-9)


def test_weights_file_is_not_pickle(tmp_path):
    actor, critic = make_policy()
    Policy(actor, critic).save(str(tmp_path / "m"))
    head = (tmp_path / "m" / "model.safetensors").read_bytes()[:16]
    assert not head.startswith(b"\x80")  # no pickle protocol header
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["manifest.json", "model.safetensors"]


def _edit_manifest(path, **changes):
    m = json.loads((path / "manifest.json").read_text())
    m.update(changes)
    (path / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("change, message", [
    ({"obs_layout": "o2o-obs-v0"}, "observation layout"),
    ({"format_version": 99}, "format version"),
    ({"hidden": [32, 32]}, "do not match|shape"),
    ({"actor_head": "self"}, "do not match|shape"),
    ({"actor_head": "fancy"}, "actor_head"),
    ({"sha256": "0" * 64}, "checksum"),
    ({"format": "something-else"}, "manifest"),
])
def test_mismatches_are_refused(tmp_path, change, message):
    actor, critic = make_policy()
    Policy(actor, critic).save(str(tmp_path / "m"))
    _edit_manifest(tmp_path / "m", **change)
    with pytest.raises(ModelError, match=message):
        load_model(str(tmp_path / "m"))


def test_wrong_nodes_missing_files_corrupt_weights_no_critic(tmp_path):
    actor, critic = make_policy()
    good = tmp_path / "m"
    Policy(actor, critic).save(str(good))
    with pytest.raises(ModelError, match="is for 4 nodes, but the network has 20"):
        load_model(str(good), nodes=20)
    with pytest.raises(ModelError, match="manifest.json is missing"):
        load_model(str(tmp_path / "nothing"))
    data = bytearray((good / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (good / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_model(str(good))
    (good / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="weights file model.safetensors is missing"):
        load_model(str(good))
    Policy(actor).save(str(tmp_path / "actor-only"))
    assert load_model(str(tmp_path / "actor-only")).has_critic is False
    with pytest.raises(ModelError, match="no critic"):
        load_model(str(tmp_path / "actor-only"), need_critic=True)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(str(tmp_path / "bad"))


def test_save_refuses_inconsistent_arrays(tmp_path):
    actor, critic = make_policy()
    from o2o.learn.nets import policy_arrays

    arrays = policy_arrays(actor, critic)
    with pytest.raises(ValueError):
        save_model(str(tmp_path / "m"), arrays, nodes=5, hidden=(64, 64))


@pytest.mark.parametrize("root", ["local", "memory"])
def test_store_versions_and_latest(tmp_path, root):
    store_url = str(tmp_path / "store") if root == "local" else "memory://store-versions"
    store = ModelStore(store_url)
    assert store.versions() == [] and store.latest() is None
    with pytest.raises(ModelError, match="no versions"):
        store.load()
    actor, critic = make_policy(0)
    assert Policy(actor, critic).publish(store_url)[0] == 1
    actor2, critic2 = make_policy(1)
    assert Policy(actor2, critic2).publish(store_url, training={"phase": "online"})[0] == 2
    assert store.versions() == [1, 2] and store.latest() == 2
    assert store.load().version == 2 and store.load(1).version == 1
    with pytest.raises(ModelError, match="no version 7"):
        store.load(7)
    # A store URL given as a model loads its latest version.
    assert load_model(store_url).manifest["training"] == {"phase": "online"}
    # A version without a manifest (being written) does not count.
    fs, path = fsspec.core.url_to_fs(store_url)
    fs.makedirs(path + "/v000003", exist_ok=True)
    assert store.latest() == 2
    if root == "memory":
        fs.rm(path, recursive=True)


def test_inverse_cdf_sampling():
    p = np.array([[0.2, 0.0, 0.8], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    assert sample_inverse_cdf(p, np.array([0.1, 0.0, 0.5])).tolist() == [0, 1, 1]
    assert sample_inverse_cdf(p, np.array([0.2, 0.999, 0.49])).tolist() == [2, 1, 0]
    # Rounding at the top never picks a zero-probability action.
    q = np.array([[0.3, 0.3, 0.3, 0.0]])
    assert sample_inverse_cdf(q, np.array([0.9999999])).tolist() == [2]
    u = np.random.default_rng(0).random(20000)
    freq = np.bincount(sample_inverse_cdf(np.repeat(p[:1], 20000, 0), u), minlength=3) / 20000
    assert freq == pytest.approx([0.2, 0.0, 0.8], abs=0.015)
    assert masked_softmax(np.array([[1.0, 5.0]]), np.array([[True, False]])).tolist() == [[1.0, 0.0]]


def test_numpy_path_does_not_import_torch(tmp_path):
    actor, critic = make_policy(self_head=True)
    Policy(actor, critic).save(str(tmp_path / "m"))
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np
        from o2o.core.scenario import load_scenario
        from o2o.core.network import sample_network
        from o2o.schedulers.drl import DRLRule
        from o2o.sim.rollout import simulate
        sc = load_scenario("paper-sim", ["nodes={N}", "slots=5"])
        net = sample_network(sc, 0)
        rule = DRLRule.from_model({str(tmp_path / 'm')!r}, sc, net)
        m = simulate(sc, net, [0, 1], rule)
        assert m["tasks"].sum() > 0
        assert not any(k == "torch" or k.startswith("torch.") for k, v in sys.modules.items() if v is not None)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_non_finite_weights_are_never_saved_nor_loaded(tmp_path):
    """A diverged training cannot write a model, and a tampered model with NaN weights whose
    checksum was recomputed is still refused."""
    import hashlib
    import json

    from safetensors.numpy import save as st_save

    actor, critic = make_policy()
    with torch.no_grad():
        actor.net.linears[0].weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match="actor.l0.weight hold NaN or infinite values; no model was written"):
        Policy(actor, critic).save(str(tmp_path / "nan"))
    assert not (tmp_path / "nan").exists()
    actor, critic = make_policy()
    Policy(actor, critic).save(str(tmp_path / "m"))
    arrays = load_model(str(tmp_path / "m")).arrays
    arrays = {k: v.copy() for k, v in arrays.items()}
    arrays["critic.l1.bias"][0] = np.inf
    payload = st_save(arrays)
    (tmp_path / "m" / "model.safetensors").write_bytes(payload)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["sha256"] = hashlib.sha256(payload).hexdigest()
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="critic.l1.bias hold NaN or infinite values; it cannot decide"):
        load_model(str(tmp_path / "m"))


def test_v2_scorer_and_central_critic_round_trip_and_v1_models_still_load(tmp_path):
    from o2o.core.decpomdp import OBS_LAYOUT_V2, critic_dim, obs_dim

    d2 = obs_dim(N, OBS_LAYOUT_V2)
    torch.manual_seed(1)
    actor = Actor(d2, N + 1, (32, 32), head="scorer")
    critic = Critic(critic_dim(N, OBS_LAYOUT_V2, "central"), (32, 32))
    manifest = Policy(actor, critic, "node").save(str(tmp_path / "v2"))
    assert (manifest["obs_layout"], manifest["actor_head"], manifest["critic_input"]) == \
        (OBS_LAYOUT_V2, "scorer", "central")
    policy, model = Policy.load(str(tmp_path / "v2"), nodes=N, need_critic=True)
    assert policy.actor.head == "scorer" and policy.critic_input == "central"
    rng = np.random.default_rng(0)
    obs = rng.random((16, d2)).astype(np.float32)
    obs[:, :N] = np.eye(N)[rng.integers(0, N, 16)]
    mask = rng.random((16, N + 1)) < 0.6
    mask[:, 0] = True
    with torch.no_grad():
        want = actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(NumpyActor.from_model(model).probs(obs, mask), want, atol=1e-6)
    with pytest.raises(ModelError, match="o2o-obs-v2"):
        load_model(str(tmp_path / "v2"), obs_layout="o2o-obs-v1")

    # A model of the first version: observation v1, no critic_input in its manifest.
    old = tmp_path / "v1"
    v1_actor, v1_critic = make_policy()
    Policy(v1_actor, v1_critic).save(str(old))
    m = json.loads((old / "manifest.json").read_text())
    del m["critic_input"]
    (old / "manifest.json").write_text(json.dumps(m))
    policy, model = Policy.load(str(old), nodes=N, need_critic=True)
    assert model.obs_layout == "o2o-obs-v1" and model.critic_input == "own"
    obs1, mask1 = random_inputs()
    with torch.no_grad():
        want = v1_actor.probs(torch.from_numpy(obs1), torch.from_numpy(mask1)).numpy()
    np.testing.assert_allclose(NumpyActor.from_model(model).probs(obs1, mask1), want, atol=1e-6)
    # A layout this o2o does not build is refused, never misread.
    m["obs_layout"] = "o2o-obs-v9"
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="does not build"):
        load_model(str(old))


def test_set_scorer_pools_the_candidates_by_hand_and_round_trips(tmp_path):
    from o2o.core.decpomdp import (CANDIDATE_FEATURES, OBS_LAYOUT_V2, SET_FEATURES,
                                   set_candidate_features, obs_dim)

    # Two candidates, 16 features each: column 0 (is-itself) and the own/task columns 9..15 are
    # copied; columns 1..8 get their mean and max over the two candidates appended.
    x = np.zeros((1, 2, CANDIDATE_FEATURES), np.float32)
    x[0, 0, :9] = [1, 0.5, 2, 0, 1, 3, 0, 0.25, 1]
    x[0, 1, :9] = [0, 1.5, 4, 2, 1, 1, 0, 0.75, 0]
    x[0, :, 9:] = 7
    out = set_candidate_features(x)
    assert out.shape == (1, 2, SET_FEATURES) == (1, 2, 32)
    np.testing.assert_array_equal(out[0, :, :16], x[0])
    for j in range(2):
        np.testing.assert_array_equal(out[0, j, 16:24], [1.0, 3, 1, 1, 2, 0, 0.5, 0.5])
        np.testing.assert_array_equal(out[0, j, 24:], [1.5, 4, 2, 1, 3, 0, 0.75, 1])
    # The torch head builds the same input, and the numpy actor of a saved model gives the
    # torch actor's probabilities.
    d2 = obs_dim(N, OBS_LAYOUT_V2)
    torch.manual_seed(2)
    actor = Actor(d2, N + 1, (32, 32), head="set-scorer")
    rng = np.random.default_rng(1)
    obs = rng.random((16, d2)).astype(np.float32)
    obs[:, :N] = np.eye(N)[rng.integers(0, N, 16)]
    mask = rng.random((16, N + 1)) < 0.6
    mask[:, 0] = True
    with torch.no_grad():
        x_torch = actor.head_input(torch.from_numpy(obs)).numpy()
        want = actor.probs(torch.from_numpy(obs), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(x_torch, set_candidate_features(obs[:, actor.index.numpy()]), atol=1e-6)
    manifest = Policy(actor, None, "node").save(str(tmp_path / "set"))
    assert manifest["actor_head"] == "set-scorer"
    model = load_model(str(tmp_path / "set"), nodes=N)
    np.testing.assert_allclose(NumpyActor.from_model(model).probs(obs, mask), want, atol=1e-6)

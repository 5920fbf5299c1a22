"""Data sets with NaN, infinite or out-of-range values, wrong dtypes or foreign metadata are
refused with a message that names the array; nothing trains on them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.logs.dataset import check_dataset, load_dataset, simulated_dataset
from o2o.sim import make_scheduler

SC = load_scenario("paper-sim", ["nodes=4", "slots=6"])
NET = sample_network(SC, 0)
GOOD = simulated_dataset(SC, NET, make_scheduler("ratc"), [1, 2], reward_credit="decision")


def test_a_good_data_set_passes():
    out = check_dataset(GOOD, n=4)
    assert out["observations"].dtype == np.float32 and str(out["reward_credit"]) == "decision"


@settings(max_examples=40, deadline=None)
@given(array=st.sampled_from(["observations", "next_observations", "rewards"]),
       value=st.sampled_from([np.nan, np.inf, -np.inf]), row=st.integers(0, 47))
def test_nan_or_inf_is_refused(array, value, row):
    data = {k: np.array(v, copy=True) for k, v in GOOD.items()}
    data[array].reshape(data[array].shape[0], -1)[row, 0] = value
    with pytest.raises(UserError, match=f"{array} holds 1 NaN or infinite"):
        check_dataset(data)


@settings(max_examples=30, deadline=None)
@given(value=st.one_of(st.floats(1.0001, 1e6), st.floats(-1e6, -1e-4)), row=st.integers(0, 47))
def test_observations_outside_unit_interval_are_refused(value, row):
    data = dict(GOOD, observations=GOOD["observations"].copy())
    data["observations"][row, 3] = value
    with pytest.raises(UserError, match="outside \\[0, 1\\]"):
        check_dataset(data)


@pytest.mark.parametrize("array,bad,match", [
    ("actions", lambda a: a.astype(np.float64) + 0.5, "actions has dtype float64; it must be integer"),
    ("action_masks", lambda a: a.astype(np.int64), "action_masks has dtype int64; it must be boolean"),
    ("rewards", lambda a: a.astype(np.int64), "rewards has dtype int64; it must be floating-point"),
    ("obs_layout", lambda a: np.array("o2o-obs-v9"), "observation layout 'o2o-obs-v9'"),
    ("reward_credit", lambda a: np.array("bogus"), "reward credit 'bogus'"),
])
def test_wrong_dtypes_and_metadata_are_refused(array, bad, match):
    data = dict(GOOD, **{array: bad(GOOD[array])})
    with pytest.raises(UserError, match=match):
        check_dataset(data)


@pytest.mark.parametrize("content,match", [
    (b"", "is not a .npz data set"),
    (b"observations,actions\n0.1,2\n", "is not a .npz data set"),
    (b"PK\x03\x04truncated", "damaged .npz"),
])
def test_files_that_are_not_data_sets(tmp_path, content, match):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        load_dataset(path)


def test_truncated_archive_is_refused(tmp_path):
    path = tmp_path / "good.npz"
    np.savez(path, **GOOD)
    raw = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match="damaged .npz"):
        load_dataset(tmp_path / "cut.npz")

"""The cold-start numbers (o2o.experiments.deployment) on hand-made per-episode counts."""

import numpy as np
import pytest

from o2o.experiments.deployment import (
    above_from,
    cumulative_regret,
    deployment_numbers,
    deployment_section,
    dip,
    moving_rate,
    regret,
    regret_peak,
    resummarize,
    seed_record,
    summarize_deployment,
    window_sums,
)

# Five episodes of 8 tasks; windows of 2 episodes hold 16 tasks, so every rate is exact.
SUCCESS = [4, 2, 3, 7, 8]
TASKS = [8] * 5
REFERENCE = [5, 3, 3, 4, 8]


def test_moving_rate_start_lowest_and_dip():
    assert window_sums(SUCCESS, 2).tolist() == [6, 5, 10, 15]
    assert moving_rate(SUCCESS, TASKS, 2).tolist() == [0.375, 0.3125, 0.625, 0.9375]
    assert dip(SUCCESS, TASKS, 2) == {"start": 0.375, "lowest": 0.3125, "lowest_episode": 3, "dip": -0.0625}
    # Never below the start: the dip is 0 and the lowest point is the first window.
    assert dip([1, 2, 3, 4], [4] * 4, 2) == {"start": 0.375, "lowest": 0.375, "lowest_episode": 2, "dip": 0.0}
    # A window of one episode: the per-episode rates themselves.
    assert dip(SUCCESS, TASKS, 1) == {"start": 0.5, "lowest": 0.25, "lowest_episode": 2, "dip": -0.25}
    # Episodes of different sizes: the window's tasks are pooled.
    assert moving_rate([1, 3], [2, 6], 2).tolist() == [0.5]


def test_regret_counts_tasks_lost_and_gained():
    assert cumulative_regret(SUCCESS, REFERENCE).tolist() == [1, 2, 2, -1, -1]
    assert regret(SUCCESS, REFERENCE) == -1           # one task gained over the five episodes
    assert regret([0, 0], [3, 4]) == 7                # seven lost
    assert regret_peak(SUCCESS, REFERENCE) == 2       # two behind after episodes 2 and 3
    assert regret_peak([5, 5], [4, 4]) == 0           # never behind
    assert isinstance(regret(SUCCESS, REFERENCE), int)
    with pytest.raises(ValueError, match="5 learner episodes against 4"):
        regret(SUCCESS, REFERENCE[:4])
    with pytest.raises(ValueError, match="integers"):
        regret([0.5], [1])


def test_first_episode_from_which_the_learner_stays_above():
    # Window sums: learner 6 5 10 15, reference 8 6 7 12: above from the window ending at 4.
    assert above_from(SUCCESS, REFERENCE, 2) == 4
    # Always above: from the first window (the window's length).
    assert above_from(SUCCESS, [0] * 5, 2) == 2
    assert above_from(SUCCESS, [0] * 5, 1) == 1
    # Above for a while, below at the end: never.
    assert above_from(SUCCESS, [0, 0, 0, 8, 8], 2) is None
    # Never above; and equal is not above.
    assert above_from(SUCCESS, [8] * 5, 2) is None
    assert above_from(SUCCESS, SUCCESS, 2) is None
    with pytest.raises(ValueError, match="window 6"):
        above_from(SUCCESS, REFERENCE, 6)


def test_above_from_matches_its_definition_on_random_counts():
    rng = np.random.default_rng(0)
    for _ in range(200):
        e = int(rng.integers(1, 12))
        w = int(rng.integers(1, e + 1))
        s, r = rng.integers(0, 4, e), rng.integers(0, 4, e)
        sums = lambda x: [int(sum(x[j - w + 1:j + 1])) for j in range(w - 1, e)]  # noqa: E731
        above = [a > b for a, b in zip(sums(s), sums(r))]
        expected = next((j + w for j in range(len(above)) if all(above[j:])), None)
        assert above_from(s, r, w) == expected
        assert regret(s, r) == int(r.sum() - s.sum())
        assert regret_peak(s, r) == max(0, max(int(r[:j].sum() - s[:j].sum()) for j in range(1, e + 1)))
        assert dip(s, np.full(e, 4), w)["dip"] <= 0


def test_numbers_of_a_learner_against_several_references():
    numbers = deployment_numbers(SUCCESS, TASKS, {"spread": REFERENCE, "generalist": [8] * 5}, 2)
    assert numbers["success_rate"] == 24 / 40 and numbers["final"] == 0.9375
    assert numbers["regret_tasks"] == {"spread": -1, "generalist": 16}
    assert numbers["regret_peak_tasks"] == {"spread": 2, "generalist": 16}
    assert numbers["above_from_episode"] == {"spread": 4, "generalist": None}
    with pytest.raises(ValueError, match="0 <= success <= tasks"):
        deployment_numbers([9], [8], {}, 1)


def test_summary_over_seeds_keeps_the_raw_counts_and_renders():
    learners = {"o2o-drl": {"seeds": [10, 11, 12, 13, 14], "tasks": TASKS, "success": SUCCESS},
                "online-only": {"seeds": [10, 11, 12, 13, 14], "tasks": TASKS, "success": [0, 1, 2, 3, 4]}}
    other = {**learners, "o2o-drl": {**learners["o2o-drl"], "success": [8] * 5}}
    records = [seed_record(0, learners, {"spread": {"tasks": TASKS, "success": REFERENCE}}),
               seed_record(1, other, {"spread": {"tasks": TASKS, "success": REFERENCE}})]
    block = summarize_deployment(records, ["o2o-drl", "online-only"], ["spread"], 2)
    m = block["mean"]["o2o-drl"]
    assert m["regret_tasks_per_seed"] == {"spread": [-1, -17]} and m["regret_tasks"] == {"spread": -9.0}
    assert m["regret_peak_tasks_per_seed"] == {"spread": [2, 0]}
    assert m["above_from_episode_per_seed"] == {"spread": [4, 2]} and m["above_from_all"] == {"spread": 4}
    assert m["dip"] == -0.03125 and m["start"] == 0.6875
    assert block["mean"]["online-only"]["above_from_all"] == {"spread": None}
    assert block["mean"]["references"] == {"spread": {"success_rate": 23 / 40, "start": 0.5, "lowest": 0.375,
                                                      "dip": -0.125, "final": 0.75}}
    assert block["episodes"] == 5 and block["tasks_per_seed"] == [40, 40]
    assert resummarize(block) == block
    text = deployment_section(block)
    assert "| O2O-DRL | 0.8000 | 0.6875 | 0.6562 (3 2) | -0.0312 | -9.0 (-1 -17) | 4 (4 2) |" in text
    assert "| online-only | 0.2500 | 0.0625 | 0.0625 (2 2) | +0.0000 | +13.0 (+13 +13) | never (never never) |" in text
    assert "| spread (same episodes) | 0.5750 | 0.5000 | 0.3750 (3 3) | -0.1250 | | |" in text
    # A reference on other episodes (other tasks) is refused.
    with pytest.raises(ValueError, match="spread did not run on the same online episodes"):
        seed_record(0, learners, {"spread": {"tasks": [7] * 5, "success": REFERENCE}})

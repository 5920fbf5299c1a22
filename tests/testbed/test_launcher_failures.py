"""The local testbed when things go wrong: node processes that exit at start are noticed at
once (not after the registration timeout), and the launcher's temporary folder of node logs is
removed after an interrupt, kept (and its place logged) after a failure."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time

import pytest

from o2o.core.errors import UserError
from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.testbed.launcher import LocalTestbed

OVERRIDES = ["nodes=2", "slot_s=0.05", "slots=4", "deadline_s=0.3"]


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """The launcher's temporary folders go here (they would go to /tmp)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _testbed(**kw) -> LocalTestbed:
    scenario = load_scenario("paper-testbed", OVERRIDES)
    return LocalTestbed(scenario, sample_network(scenario, 0), **kw)


def test_nodes_that_exit_at_start_are_noticed_at_once(own_tmp, caplog):
    tb = _testbed(python="/bin/false", start_timeout_s=60)  # every node process exits at once

    async def go():
        async with tb:
            pass

    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="o2o.testbed.launcher"):
        with pytest.raises(UserError, match="exited before registering") as err:
            asyncio.run(go())
    assert time.monotonic() - start < 15
    assert "node 0 exited with code 1" in str(err.value)
    assert all(p.poll() is not None for p in tb._all_procs)
    # A failure keeps the node logs, and says where.
    (kept,) = own_tmp.iterdir()
    assert kept.name.startswith("o2o-testbed-") and f"node logs kept in {kept}" in caplog.text
    assert str(kept) in str(err.value)


def test_an_interrupted_testbed_leaves_no_folder(own_tmp):
    tb = _testbed()

    async def go():
        async with tb:
            assert list(own_tmp.iterdir()) == [tb.log_dir]
            raise asyncio.CancelledError  # what Ctrl-C is inside asyncio.run

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())
    assert all(p.poll() is not None for p in tb._all_procs)
    assert list(own_tmp.iterdir()) == []

#!/usr/bin/env bash
# The --hosts netns figures of docs/testbed.md, on paper-testbed (10 nodes), as root:
#   1. RATC, 5 episodes, simulator vs testbed, the task log on PostgreSQL over the test bridge;
#   2. payload transfer time / (s/r_ij) with kernel shaping and with user-space pacing, and the
#      slot clock, in one `o2o bench testbed --pacing both` (5 episodes each);
#   3. node 3's namespace killed (SIGKILL) at slot 20 of the first of 2 episodes, log on PostgreSQL.
# After each: the task log's rows checked against the simulator's episodes, and what is left of
# the runs (namespaces, interfaces, state files, node processes: all must be 0).
# Usage: scripts/netns-acceptance.sh [EPISODES]   (takes about 4 minutes on 2 idle cores)
set -euo pipefail
cd "$(dirname "$0")/.."
episodes=${1:-5}
py=.venv/bin/python
o2o=.venv/bin/o2o
subnet=$($py -c 'from o2o.testbed import netns; print(netns.choose_subnet(None, 10, netns.networks_in_use()))')
eval "$(bash scripts/netns-postgres.sh start "$subnet")"
trap 'bash scripts/netns-postgres.sh stop "$PGFOLDER"' EXIT

# Every process these runs start inherits this variable: it tells their node processes from
# those of other testbeds on the machine.
export O2O_ACCEPTANCE_RUN=$$-$RANDOM
left() {
  local nodes=0 p
  for p in $(pgrep -f 'o2o[.]testbed[.]node' || true); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "O2O_ACCEPTANCE_RUN=$O2O_ACCEPTANCE_RUN" \
      && nodes=$((nodes + 1))
  done
  echo "left behind: namespaces $(ip netns list | grep -c '^o2o-' || true)," \
       "interfaces $(ip -br link | grep -c '^o2o-' || true)," \
       "state files $(find /run/o2o-testbed -name '*.json' 2>/dev/null | wc -l)," \
       "node processes of these runs $nodes"
}
rows() {   # every task row of the last run is written and settled, as many tasks as the simulator's
  $py - "$LOCAL_URL" "$@" <<'EOF'
import sys
from o2o.core.episodes import sample_episodes
from o2o.core.outcomes import PENDING
from o2o.logs.store import LogStore
with LogStore.open(sys.argv[1]) as store:
    info = store.runs()[-1]
    logs = [log for _, log in store.read_episodes(info.id)]
    network = store.network(info.id)
    scenario = info.scenario
seeds = [log.episode_seed for log in logs]
expected = int(sample_episodes(scenario, network, seeds).has_task.sum())
rows = sum(log.has_task.size for log in logs)
tasks = sum(int(log.has_task.sum()) for log in logs)
pending = sum(int((log.outcome[log.has_task] == PENDING).sum()) for log in logs)
print(f"task log: run {info.id} ({info.status}), {len(logs)} episodes, {rows} node-slot rows, "
      f"{tasks} tasks (the simulator's episodes: {expected}), {pending} without an outcome")
ok = tasks == expected and pending == 0 and len(logs) == int(sys.argv[2])
if len(sys.argv) > 3:                     # NODE@SLOT killed in the first episode
    import numpy as np
    from o2o.core.outcomes import EXEC_FAIL, SUCCESS
    node, slot = map(int, sys.argv[3].split("@"))
    first, second = logs[0], logs[1]
    own = first.has_task[slot + 1:, node]
    own_failed = int((first.outcome[slot + 1:, node][own] == EXEC_FAIL).sum())
    towards = first.has_task & (first.dest == node) & (np.arange(first.slots)[:, None] > slot)
    back = second.has_task[:, node]            # the rejoined node's own tasks of the next episode
    back_ok = int((second.outcome[:, node][back] == SUCCESS).sum())
    print(f"node {node} killed at slot {slot}: its own later tasks {int(own.sum())}, execution failures "
          f"{own_failed}; later tasks sent to it {int(towards.sum())}, successes "
          f"{int((first.outcome[towards] == SUCCESS).sum())}; next episode: its own tasks "
          f"{int(back.sum())}, successes {back_ok}, run at node {node}: {int((second.dest[second.has_task] == node).sum())}")
    ok = ok and own_failed == int(own.sum()) and not (first.outcome[towards] == SUCCESS).any() and back_ok > 0
sys.exit(0 if ok else 1)
EOF
}

echo "== $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg), test subnet $subnet"
echo "== 1. o2o testbed compare --hosts netns --scheduler ratc --episodes $episodes (log on PostgreSQL over the bridge)"
$o2o testbed compare --hosts netns --subnet "$subnet" --db "$DB_URL" --scheduler ratc --episodes "$episodes"
rows "$episodes"
left
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 2. o2o bench testbed --hosts netns --pacing both --episodes $episodes"
$o2o bench testbed --hosts netns --pacing both --episodes "$episodes" 2>&1 | grep -v 'episode/s'
left
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 3. o2o testbed run --hosts netns --episodes 2 --kill-node 3@20 (log on PostgreSQL over the bridge)"
$o2o testbed run --hosts netns --subnet "$subnet" --db "$DB_URL" --episodes 2 --kill-node 3@20 2>&1 \
  | grep -v 'episode/s'
rows 2 3@20
left
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg)"

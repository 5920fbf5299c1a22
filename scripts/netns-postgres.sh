#!/usr/bin/env bash
# A throwaway PostgreSQL server for the task log of `o2o testbed run --hosts netns --subnet SUBNET`.
#
#   scripts/netns-postgres.sh start SUBNET     prints DB_URL='...', LOCAL_URL='...', PGFOLDER='...'
#                                              (shell assignments: eval "$(... start SUBNET)")
#   scripts/netns-postgres.sh stop PGFOLDER    stops the server and removes its folder
#
# The server listens on every address of the host (the run's bridge address, SUBNET's first
# host, does not exist before the run), and its pg_hba.conf admits the role o2o to the database
# o2o only from the controller's namespace address (SUBNET's .2): a run that writes its log
# there wrote every row over the test bridge. Anything else is rejected, except reads through
# the server's Unix socket in PGFOLDER (LOCAL_URL). Needs root and the PostgreSQL server
# binaries (scripts/start-postgres.sh installs them); the port is a free one.
set -euo pipefail
die() { echo "netns-postgres: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (it runs the server as the postgres user)"
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || die "no PostgreSQL server binaries; run scripts/start-postgres.sh first"
as_pg() { runuser -u postgres -- "$@"; }

case "${1:-}" in
start)
  subnet=${2:?usage: $0 start SUBNET}
  read -r bridge controller < <(python3 -c '
import ipaddress, sys
net = ipaddress.ip_network(sys.argv[1], strict=True)
print(net.network_address + 1, net.network_address + 2)' "$subnet") || die "$subnet is not a subnet such as 10.213.7.0/24"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  folder=$(mktemp -d /tmp/o2o-netns-pg-XXXXXX)
  chmod 755 "$folder" && chown postgres:postgres "$folder"
  as_pg "$bindir/initdb" -D "$folder/db" -U o2o --auth reject -E UTF8 >/dev/null
  printf 'local all o2o trust\nhost o2o o2o %s/32 trust\n' "$controller" > "$folder/db/pg_hba.conf"
  as_pg "$bindir/pg_ctl" -D "$folder/db" -l "$folder/server.log" -w -o \
    "-p $port -c listen_addresses=* -c unix_socket_directories=$folder -c fsync=off" start >/dev/null
  as_pg "$bindir/psql" -h "$folder" -p "$port" -U o2o -d postgres -qAtc "create database o2o"
  # Shell assignments, quoted: eval "$(scripts/netns-postgres.sh start SUBNET)".
  printf "DB_URL='%s'\n" "postgresql+psycopg://o2o@$bridge:$port/o2o"
  printf "LOCAL_URL='%s'\n" "postgresql+psycopg://o2o@/o2o?host=$folder&port=$port"
  printf "PGFOLDER='%s'\n" "$folder"
  ;;
stop)
  folder=${2:?usage: $0 stop PGFOLDER}
  case "$folder" in /tmp/o2o-netns-pg-*) ;; *) die "$folder is not a folder this script made" ;; esac
  if [ -f "$folder/db/postmaster.pid" ]; then
    as_pg "$bindir/pg_ctl" -D "$folder/db" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$folder"
  ;;
*)
  die "usage: $0 start SUBNET | stop PGFOLDER"
  ;;
esac

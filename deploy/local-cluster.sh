#!/usr/bin/env bash
# A Boxoffice cluster on this machine: N `boxoffice node` processes and one `boxoffice api` on
# loopback ports, for trying the cluster by hand. It builds nothing (see the usage text).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BOXOFFICE:-$ROOT/target/release/boxoffice}
NODE_PORT=${BOXOFFICE_NODE_PORT:-7001}
API_PORT=${BOXOFFICE_API_PORT:-8080}
STOP_GRACE_S=${BOXOFFICE_STOP_GRACE_S:-10}
READY_TIMEOUT_S=${BOXOFFICE_READY_TIMEOUT_S:-60}
# A process that has not printed its address by then is not going to.
START_TIMEOUT_S=30
NODES_MAX=9
REPLICATION_MAX=3

usage() {
  cat <<EOF
usage: deploy/local-cluster.sh start  [--nodes N] [--shards S] [--dir DIR]
       deploy/local-cluster.sh stop   [--dir DIR]
       deploy/local-cluster.sh status [--dir DIR]
       deploy/local-cluster.sh rolling-restart [--dir DIR]

start   starts N nodes (default 3, at most $NODES_MAX) on 127.0.0.1, ports BOXOFFICE_NODE_PORT and up,
        and one api on 127.0.0.1:BOXOFFICE_API_PORT; creates the cluster on the first start
        (S shards, default 8; replication min(3, N)); waits until the api is ready and prints its
        URL. On an existing DIR it starts whatever is not running, on the same ports and data,
        without creating the cluster again.
stop    stops every process of DIR: SIGTERM, then SIGKILL after BOXOFFICE_STOP_GRACE_S seconds.
status  shows which processes run, then the cluster's nodes, shards, leaders and lag.
rolling-restart
        restarts every node in turn (SIGTERM: it hands its leaderships over first), each once the
        cluster is healthy again after the one before (every group led, no replica behind):
        bookings go on throughout without failing. Upgrading is the same with a new \$BOXOFFICE.

This script builds nothing. It runs \$BOXOFFICE, by default target/release/boxoffice of this
repository; build it first with:  cargo build --release --bin boxoffice

DIR (default ./boxoffice-cluster) keeps each node's data (node-ID/), the logs (logs/), the pid
files (run/), the settings of the first start (cluster.env), the secrets generated on the first
start, mode 600: cluster-secret, jwt-secret and queue-secret, and the cluster's TLS (tls/): a CA
made on the first start (tls/ca, its key mode 600) and a credential for the nodes, the api and the
operator (tls/node, tls/api, tls/operator; keys mode 600). Every connection between the processes
is mutual TLS. The api serves dev tokens (POST /v1/auth/dev-token): this is a development
cluster, not a deployment.

environment:
  BOXOFFICE                  the binary to run     (default: $ROOT/target/release/boxoffice)
  BOXOFFICE_NODE_PORT        port of node 1; node ID listens on BOXOFFICE_NODE_PORT + ID - 1 (default 7001)
  BOXOFFICE_API_PORT         port of the api       (default 8080)
  BOXOFFICE_STOP_GRACE_S     seconds between SIGTERM and SIGKILL on stop (default 10)
  BOXOFFICE_READY_TIMEOUT_S  seconds start waits for the api's /readyz (default 60)
EOF
}

die() {
  echo "local-cluster: $*" >&2
  exit 1
}

is_uint() {
  [[ $1 =~ ^[0-9]+$ ]]
}

# The value of KEY in a `KEY=value` file we wrote ourselves (read, never sourced).
setting() {
  local key=$1 file=$2 line
  line=$(grep "^$key=" "$file" || true)
  echo "${line#*=}"
}

# Size of a file in bytes, 0 when it does not exist yet.
file_size() {
  if [[ -f $1 ]]; then wc -c <"$1" | tr -d ' '; else echo 0; fi
}

# True while process PID runs (a zombie counts as gone).
alive() {
  local state
  read -r state < <(ps -p "$1" -o stat= 2>/dev/null || true)
  [[ -n ${state:-} && $state != Z* ]]
}

# True when the pid file names a live boxoffice process: not a recycled pid, and not a zombie
# that its new parent has yet to reap (kill -0 succeeds on those).
running() {
  local pidfile=$1 pid state args
  [[ -f $pidfile ]] || return 1
  pid=$(cat "$pidfile")
  is_uint "$pid" || return 1
  read -r state args < <(ps -p "$pid" -o stat=,args= 2>/dev/null || true)
  [[ -n ${state:-} && $state != Z* && ${args:-} == *boxoffice* ]]
}

random_secret() {
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

# Waits until process PID has written TEXT to LOG after byte OFFSET (its first stdout line).
wait_for_line() {
  local pid=$1 log=$2 offset=$3 text=$4 what=$5
  local deadline=$((SECONDS + START_TIMEOUT_S))
  # grep without -q reads to the end, so tail never dies of SIGPIPE under pipefail.
  until tail -c +$((offset + 1)) "$log" | grep -F "$text" >/dev/null; do
    if ! alive "$pid"; then
      echo "local-cluster: $what exited; the end of $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    ((SECONDS < deadline)) || die "$what printed no address in ${START_TIMEOUT_S}s; see $log"
    sleep 0.1
  done
}

# Starts one process in the background, detached from this terminal, appending to LOG.
launch() {
  local pidfile=$1 log=$2
  shift 2
  if command -v setsid >/dev/null; then
    setsid nohup "$@" >>"$log" 2>&1 </dev/null &
  else
    nohup "$@" >>"$log" 2>&1 </dev/null &
  fi
  echo $! >"$pidfile"
}

node_addr() {
  echo "127.0.0.1:$((NODE_PORT + $1 - 1))"
}

load_secrets() {
  [[ -f $DIR/cluster-secret ]] || die "no secrets in $DIR"
  [[ -f $DIR/tls/operator/cert.pem ]] || die "no TLS credentials in $DIR/tls"
}

# The cluster CA and a credential for each role, made on the first start (never replaced).
make_credentials() {
  local role
  if [[ ! -f $DIR/tls/ca/ca.pem ]]; then
    "$BIN" certs init --ca-dir "$DIR/tls/ca" >/dev/null
  fi
  for role in node api operator; do
    [[ -f $DIR/tls/$role/cert.pem ]] && continue
    "$BIN" certs issue --ca-dir "$DIR/tls/ca" --role "$role" --name "local-$role" --host 127.0.0.1 \
      --out "$DIR/tls/$role" >/dev/null
  done
}

# The operator's flags: the secret from its file, the operator's credential.
operator_flags() {
  OPERATOR_FLAGS=(--cluster-secret-file "$DIR/cluster-secret" --tls-dir "$DIR/tls/operator")
}

# Records the settings of the first start, or checks that this start asks for the same ones: the
# shard count and the addresses are part of the cluster's data and cannot change under it.
settle_settings() {
  local file=$DIR/cluster.env
  if [[ ! -f $file ]]; then
    if [[ -n $(ls -A "$DIR") ]]; then
      die "$DIR is not empty and holds no cluster.env: not a local cluster directory"
    fi
    NODES=${NODES:-3}
    SHARDS=${SHARDS:-8}
    printf 'nodes=%s\nshards=%s\nnode_port=%s\napi_port=%s\n' "$NODES" "$SHARDS" "$NODE_PORT" "$API_PORT" >"$file"
    return
  fi
  local key want have
  for key in nodes shards node_port api_port; do
    have=$(setting "$key" "$file")
    case $key in
      nodes) want=${NODES:-$have} ;;
      shards) want=${SHARDS:-$have} ;;
      node_port) want=$NODE_PORT ;;
      api_port) want=$API_PORT ;;
    esac
    [[ $want == "$have" ]] || die "$DIR was created with $key=$have; this start asks for $want (use another --dir)"
  done
  NODES=$(setting nodes "$file")
  SHARDS=$(setting shards "$file")
}

start() {
  [[ -x $BIN ]] || die "no binary at $BIN; build it first: cargo build --release --bin boxoffice"
  if [[ -n ${NODES:-} ]]; then
    if ! { is_uint "$NODES" && ((NODES >= 1 && NODES <= NODES_MAX)); }; then
      die "--nodes is between 1 and $NODES_MAX"
    fi
  fi
  if [[ -n ${SHARDS:-} ]]; then
    if ! { is_uint "$SHARDS" && ((SHARDS >= 1)); }; then
      die "--shards is a positive number"
    fi
  fi
  if ! { is_uint "$NODE_PORT" && is_uint "$API_PORT"; }; then
    die "BOXOFFICE_NODE_PORT and BOXOFFICE_API_PORT are numbers"
  fi
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  settle_settings
  mkdir -p "$DIR/logs" "$DIR/run"
  local f
  for f in cluster-secret jwt-secret queue-secret; do
    [[ -f $DIR/$f ]] || (umask 077 && random_secret >"$DIR/$f")
    chmod 600 "$DIR/$f"
  done
  make_credentials
  load_secrets
  operator_flags

  local id addrs="" members="" pidfile log offset
  for ((id = 1; id <= NODES; id++)); do
    addrs+="${addrs:+,}$(node_addr "$id")"
    members+="${members:+,}$id=$(node_addr "$id")"
    pidfile=$DIR/run/node-$id.pid
    if running "$pidfile"; then
      echo "node $id already running (pid $(cat "$pidfile"))"
      continue
    fi
    start_node "$id"
  done

  local replication=$((NODES < REPLICATION_MAX ? NODES : REPLICATION_MAX))
  if [[ ! -f $DIR/initialized ]]; then
    "$BIN" cluster init --node "$(node_addr 1)" --nodes "$members" --shards "$SHARDS" --replication "$replication" \
      "${OPERATOR_FLAGS[@]}"
    touch "$DIR/initialized"
  fi

  pidfile=$DIR/run/api.pid
  log=$DIR/logs/api.log
  if running "$pidfile"; then
    echo "api already running (pid $(cat "$pidfile"))"
  else
    offset=$(file_size "$log")
    launch "$pidfile" "$log" "$BIN" api --listen "127.0.0.1:$API_PORT" --nodes "$addrs" --dev-tokens --sandbox-payments \
      --jwt-secret-file "$DIR/jwt-secret" --queue-secret-file "$DIR/queue-secret" \
      --cluster-secret-file "$DIR/cluster-secret" --tls-dir "$DIR/tls/api"
    wait_for_line "$(cat "$pidfile")" "$log" "$offset" "boxoffice: api listening on " "the api"
    echo "api listening on 127.0.0.1:$API_PORT (pid $(cat "$pidfile"))"
  fi

  local url=http://127.0.0.1:$API_PORT deadline=$((SECONDS + READY_TIMEOUT_S))
  until curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; do
    running "$pidfile" || die "the api exited; see $log"
    ((SECONDS < deadline)) || die "the api is not ready after ${READY_TIMEOUT_S}s; see $DIR/logs"
    sleep 0.2
  done

  cat <<EOF

Boxoffice is up: $NODES nodes, $SHARDS shards, replication $replication.
  api      $url
  nodes    $members
  logs     $DIR/logs/
  token    curl -s -X POST $url/v1/auth/dev-token -d '{"user_id":"alice","role":"user"}'
  status   $0 status --dir $DIR
           (or: $BIN cluster status --node $(node_addr 1) ${OPERATOR_FLAGS[*]})
  stop     $0 stop --dir $DIR
EOF
}

# Starts node ID on its address and data, and waits until it listens.
start_node() {
  local id=$1 pidfile=$DIR/run/node-$1.pid log=$DIR/logs/node-$1.log offset
  offset=$(file_size "$log")
  launch "$pidfile" "$log" "$BIN" node --id "$id" --listen "$(node_addr "$id")" --data-dir "$DIR/node-$id" \
    --cluster-secret-file "$DIR/cluster-secret" --tls-dir "$DIR/tls/node"
  wait_for_line "$(cat "$pidfile")" "$log" "$offset" "boxoffice: node $id listening on " "node $id"
  echo "node $id listening on $(node_addr "$id") (pid $(cat "$pidfile"))"
}

# Sends SIGTERM to PID and waits for it to exit, SIGKILL after the grace period.
stop_pid() {
  local pid=$1 name=$2 deadline=$((SECONDS + STOP_GRACE_S))
  kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid" && ((SECONDS < deadline)); do
    sleep 0.1
  done
  if alive "$pid"; then
    echo "$name (pid $pid) still running after ${STOP_GRACE_S}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

# Waits until the cluster is healthy, asking node ID.
wait_healthy() {
  "$BIN" cluster status --node "$(node_addr "$1")" --wait-healthy "${READY_TIMEOUT_S}s" "${OPERATOR_FLAGS[@]}" \
    >/dev/null || die "the cluster did not become healthy in ${READY_TIMEOUT_S}s"
}

rolling_restart() {
  [[ -f $DIR/cluster.env ]] || die "no local cluster in $DIR"
  [[ -x $BIN ]] || die "no binary at $BIN"
  NODE_PORT=$(setting node_port "$DIR/cluster.env")
  local nodes id pidfile other
  nodes=$(setting nodes "$DIR/cluster.env")
  load_secrets
  operator_flags
  for ((id = 1; id <= nodes; id++)); do
    pidfile=$DIR/run/node-$id.pid
    running "$pidfile" || die "node $id is not running: start the cluster first"
  done
  wait_healthy 1
  for ((id = 1; id <= nodes; id++)); do
    pidfile=$DIR/run/node-$id.pid
    echo "restarting node $id"
    stop_pid "$(cat "$pidfile")" "node $id"
    start_node "$id"
    other=$((id % nodes + 1))
    wait_healthy "$other"
  done
  echo "every node restarted; the cluster is healthy"
}

# The pid files of DIR, the api first: it stops taking requests before the nodes go.
pidfiles() {
  local f
  [[ -f $DIR/run/api.pid ]] && echo "$DIR/run/api.pid"
  for f in "$DIR"/run/node-*.pid; do
    [[ -f $f ]] && echo "$f"
  done
  return 0
}

stop() {
  [[ -f $DIR/cluster.env ]] || die "no local cluster in $DIR"
  local f pid names=() pids=()
  while read -r f; do
    if running "$f"; then
      pid=$(cat "$f")
      kill -TERM "$pid" 2>/dev/null || true
      names+=("$(basename "$f" .pid)")
      pids+=("$pid")
    fi
    rm -f "$f"
  done < <(pidfiles)
  ((${#pids[@]} > 0)) || {
    echo "nothing running in $DIR"
    return
  }
  local deadline=$((SECONDS + STOP_GRACE_S)) i left
  while :; do
    left=0
    for i in "${!pids[@]}"; do
      if alive "${pids[$i]}"; then left=$((left + 1)); fi
    done
    ((left > 0 && SECONDS < deadline)) || break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if alive "${pids[$i]}"; then
      echo "${names[$i]} (pid ${pids[$i]}) still running after ${STOP_GRACE_S}s: SIGKILL"
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    else
      echo "${names[$i]} stopped"
    fi
  done
}

status() {
  [[ -f $DIR/cluster.env ]] || die "no local cluster in $DIR"
  [[ -x $BIN ]] || die "no binary at $BIN"
  NODE_PORT=$(setting node_port "$DIR/cluster.env")
  local nodes id f name first=""
  nodes=$(setting nodes "$DIR/cluster.env")
  for ((id = 1; id <= nodes; id++)); do
    f=$DIR/run/node-$id.pid
    if running "$f"; then
      echo "node $id  $(node_addr "$id")  running (pid $(cat "$f"))"
      first=${first:-$(node_addr "$id")}
    else
      echo "node $id  $(node_addr "$id")  stopped"
    fi
  done
  f=$DIR/run/api.pid
  name="api     127.0.0.1:$(setting api_port "$DIR/cluster.env")"
  if running "$f"; then echo "$name  running (pid $(cat "$f"))"; else echo "$name  stopped"; fi
  [[ -n $first ]] || die "no node is running"
  echo
  load_secrets
  operator_flags
  "$BIN" cluster status --node "$first" "${OPERATOR_FLAGS[@]}"
}

main() {
  (($# > 0)) || {
    usage >&2
    exit 2
  }
  local command=$1
  shift
  DIR=./boxoffice-cluster
  NODES=""
  SHARDS=""
  while (($# > 0)); do
    case $1 in
      --nodes) NODES=${2:?--nodes needs a value} && shift 2 ;;
      --shards) SHARDS=${2:?--shards needs a value} && shift 2 ;;
      --dir) DIR=${2:?--dir needs a value} && shift 2 ;;
      -h | --help) usage && exit 0 ;;
      *) die "unknown argument $1 (see --help)" ;;
    esac
  done
  case $command in
    start) start ;;
    stop | status | rolling-restart)
      [[ -z $NODES && -z $SHARDS ]] || die "$command takes only --dir"
      [[ -d $DIR ]] || die "no local cluster in $DIR"
      DIR=$(cd "$DIR" && pwd)
      "${command//-/_}"
      ;;
    -h | --help | help) usage ;;
    *) die "unknown command $command (start, stop, status or rolling-restart; see --help)" ;;
  esac
}

main "$@"

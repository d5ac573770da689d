#!/bin/sh
# The node pod's membership, run by its `member` sidecar with the operator's credential (the node
# process itself holds only a node's). Two steps:
#
# 1. Before the node starts: choose the node's id once and keep it in the data volume
#    (`$DATA/node-id`); the node container waits for that file. A pod of the first
#    $BOXOFFICE_INITIAL_NODES, finding no cluster yet, takes its ordinal + 1: the ids `cluster
#    init` names. Any other fresh volume (a pod added by scaling up, or one whose volume was
#    lost) takes the smallest of ordinal + 1, ordinal + 1 + 1000, ordinal + 1 + 2000, … that the
#    layout has never named: a node id is never reused, and a fresh volume never poses as a node
#    the cluster knows.
# 2. Once a cluster exists: if the layout does not name the node, `cluster add-node` (safe to
#    repeat; it fails until the node answers, and is tried again); replicas then move onto it.
#    A node the layout names (active, draining or removed) is left as it is. Then the sidecar
#    idles until the pod stops.
set -eu

: "${POD_NAME:?}" "${POD_NAMESPACE:?}" "${BOXOFFICE_NODE_SERVICE:?}" "${BOXOFFICE_INITIAL_NODES:?}"
DATA=${BOXOFFICE_DATA:-/var/lib/boxoffice}
DOMAIN=${BOXOFFICE_CLUSTER_DOMAIN:-cluster.local}
PORT=${BOXOFFICE_NODE_PORT:-7001}
ID_STRIDE=1000
# How often a fresh volume asks for the layout before it concludes there is none: briefly for
# the first pods (before `cluster init` there is none), longer for the others (there must be one).
FIRST_ATTEMPTS=3
LATER_ATTEMPTS=60

ordinal=${POD_NAME##*-}
case $ordinal in '' | *[!0-9]*) echo "member: no ordinal in pod name $POD_NAME" >&2 && exit 1 ;; esac
dns() { echo "$BOXOFFICE_NODE_SERVICE-$1.$BOXOFFICE_NODE_SERVICE.$POD_NAMESPACE.svc.$DOMAIN:$PORT"; }
self=$(dns "$ordinal")
OPERATOR="--tls-dir /etc/boxoffice/operator-tls --cluster-secret-file /etc/boxoffice/cluster/cluster-secret"

# Where operator commands go: the other initial pods, then this one (a node that joined knows the
# layout too; a cluster of one has no other).
seeds() {
  i=0
  while [ $i -lt "$BOXOFFICE_INITIAL_NODES" ]; do
    [ $i -ne "$ordinal" ] && dns $i
    i=$((i + 1))
  done
  echo "$self"
}

# `cluster status`, from the first seed that knows the layout; fails if none does.
layout() {
  for seed in $(seeds); do
    # shellcheck disable=SC2086
    boxoffice cluster status --node "$seed" $OPERATOR 2>/dev/null && return 0
  done
  return 1
}

# `cluster add-node` of this node, through the first seed that takes it.
add_node() {
  for seed in $(seeds); do
    # shellcheck disable=SC2086
    boxoffice cluster add-node --node "$seed" $OPERATOR --id "$1" --addr "$self" && return 0
  done
  return 1
}

# "ID STATUS" of every node the layout names.
nodes_of() { awk '$1 ~ /^[0-9]+$/ { print $1, $3 }'; }

choose_id() {
  if [ -s "$DATA/node-id" ]; then
    cat "$DATA/node-id"
    return
  fi
  known=""
  attempts=$LATER_ATTEMPTS
  [ "$ordinal" -lt "$BOXOFFICE_INITIAL_NODES" ] && attempts=$FIRST_ATTEMPTS
  attempt=0
  while [ $attempt -lt $attempts ]; do
    if status=$(layout) && [ -n "$status" ]; then
      known=$(echo "$status" | nodes_of | awk '{ print $1 }')
      break
    fi
    attempt=$((attempt + 1))
    sleep 2
  done
  id=$((ordinal + 1))
  if [ -z "$known" ] && [ "$ordinal" -lt "$BOXOFFICE_INITIAL_NODES" ]; then
    echo "$id"
    return
  fi
  if [ -z "$known" ]; then
    echo "member: no node knows a cluster layout, and $POD_NAME is not one of the first $BOXOFFICE_INITIAL_NODES" >&2
    return 1
  fi
  while echo "$known" | grep -qx "$id"; do
    id=$((id + ID_STRIDE))
  done
  echo "$id"
}

id=$(choose_id)
# Written atomically: the node container starts on the file's first sight of it.
echo "$id" >"$DATA/node-id.tmp" && mv "$DATA/node-id.tmp" "$DATA/node-id"
echo "member: $POD_NAME is node $id at $self"

# Until the node answers and the layout lists it as active.
while :; do
  if status=$(layout) && [ -n "$status" ]; then
    state=$(echo "$status" | nodes_of | awk -v id="$id" '$1 == id { print $2; exit }')
    [ "$state" = active ] && break
    if [ -z "$state" ]; then
      add_node "$id" || true
    else
      echo "member: node $id is $state in the layout; nothing to do" >&2
      break
    fi
  fi
  sleep 5
done
echo "member: node $id is a member"
exec sleep infinity

#!/bin/sh
# The init Job: creates the cluster from the StatefulSet's first $BOXOFFICE_INITIAL_NODES pods
# (ids 1…N, each at its stable name), once. A cluster that already has a layout is left alone,
# so running the Job again (re-applied, or retried after a failure) changes nothing; and `cluster
# init` itself answers the same layout when repeated with the same nodes, shards and replication.
set -eu
: "${POD_NAMESPACE:?}" "${BOXOFFICE_NODE_SERVICE:?}" "${BOXOFFICE_INITIAL_NODES:?}" "${BOXOFFICE_SHARDS:?}"
DOMAIN=${BOXOFFICE_CLUSTER_DOMAIN:-cluster.local}
PORT=${BOXOFFICE_NODE_PORT:-7001}
REPLICATION=${BOXOFFICE_REPLICATION:-3}
OPERATOR="--tls-dir /etc/boxoffice/tls --cluster-secret-file /etc/boxoffice/cluster/cluster-secret"

dns() { echo "$BOXOFFICE_NODE_SERVICE-$1.$BOXOFFICE_NODE_SERVICE.$POD_NAMESPACE.svc.$DOMAIN:$PORT"; }
first=$(dns 0)
nodes=""
i=0
while [ $i -lt "$BOXOFFICE_INITIAL_NODES" ]; do
  nodes="$nodes${nodes:+,}$((i + 1))=$(dns $i)"
  i=$((i + 1))
done

# shellcheck disable=SC2086
if boxoffice cluster status --node "$first" $OPERATOR; then
  echo "cluster-init: the cluster exists; nothing to do"
  exit 0
fi
# shellcheck disable=SC2086
exec boxoffice cluster init --node "$first" $OPERATOR --nodes "$nodes" \
  --shards "$BOXOFFICE_SHARDS" --replication "$REPLICATION"

#!/bin/sh
# Starts `boxoffice node` with the id its `member` sidecar chose (`$DATA/node-id`), listening on
# every address and advertising its stable name behind the headless Service.
set -eu
: "${POD_NAME:?}" "${POD_NAMESPACE:?}" "${BOXOFFICE_NODE_SERVICE:?}"
DATA=${BOXOFFICE_DATA:-/var/lib/boxoffice}
DOMAIN=${BOXOFFICE_CLUSTER_DOMAIN:-cluster.local}
PORT=${BOXOFFICE_NODE_PORT:-7001}
ID_WAIT_S=300

waited=0
until [ -s "$DATA/node-id" ]; do
  [ $waited -lt $ID_WAIT_S ] || { echo "node-start: no $DATA/node-id after ${ID_WAIT_S}s" >&2 && exit 1; }
  sleep 1
  waited=$((waited + 1))
done
exec boxoffice node --id "$(cat "$DATA/node-id")" --listen "0.0.0.0:$PORT" \
  --advertise "$POD_NAME.$BOXOFFICE_NODE_SERVICE.$POD_NAMESPACE.svc.$DOMAIN:$PORT" \
  --data-dir "$DATA/node" --tls-dir /etc/boxoffice/tls \
  --cluster-secret-file /etc/boxoffice/cluster/cluster-secret

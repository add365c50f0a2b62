#!/bin/bash
# One dump of `bigmem MiB` to a page server on 127.0.0.1 (docs/page-server.md, "Measures"):
# prints the wall time of the dump command and its frozen_time (crit show stats-dump).
#   bench/page-server.sh DUMPER SERVER LABEL [MiB] [tls]
# DUMPER, SERVER: crest or criu binaries (SERVER "local": a plain dump, no page server);
# tls: both sides with --tls, certificates for 127.0.0.1 in $CERTS (ca.pem, server.pem,
# server-key.pem, client.pem, client-key.pem; made as test/cr/page-server.test.ts makes them).
DUMPER=$1; SERVER=$2; LABEL=$3; MIB=${4:-1024}; TLS=$5
root=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/crest-bench-XXXXXX)
mkdir -p $W/imgs $W/srv
setsid $root/build/workloads/bigmem $W/status $MIB </dev/null >>$W/out.log 2>&1 &
WPID=$!
for i in $(seq 1 600); do grep -q ready $W/status 2>/dev/null && break; sleep 0.05; done
PORT=$((30000 + RANDOM % 20000))
PS=(); STLS=(); DTLS=()
if [ -n "$TLS" ]; then
  STLS=(--tls --tls-cacert $CERTS/ca.pem --tls-cert $CERTS/server.pem --tls-key $CERTS/server-key.pem)
  DTLS=(--tls --tls-cacert $CERTS/ca.pem --tls-cert $CERTS/client.pem --tls-key $CERTS/client-key.pem)
fi
if [ "$SERVER" != local ]; then
  $SERVER page-server -D $W/srv --address 127.0.0.1 --port $PORT -d --pidfile $W/ps.pid -o ps.log "${STLS[@]}" >/dev/null 2>&1
  PS=(--page-server --address 127.0.0.1 --port $PORT "${DTLS[@]}")
  sleep 0.2
fi
sync; sleep 0.3
t0=$(date +%s.%N)
$DUMPER dump -t $WPID -D $W/imgs "${PS[@]}" -o dump.log -v4 >/dev/null 2>&1
rc=$?
t1=$(date +%s.%N)
[ "$SERVER" != local ] && for i in $(seq 1 100); do [ -e /proc/$(cat $W/ps.pid 2>/dev/null) ] || break; sleep 0.05; done
frozen=$(crit show $W/imgs/stats-dump 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["entries"][0]["dump"]["frozen_time"]/1e6))' 2>/dev/null)
bytes=$(du -sb $W/srv | cut -f1)
printf "%-44s rc=%s wall=%.3f s frozen=%s s server_bytes=%s\n" "$LABEL" $rc $(echo "$t1 - $t0" | bc) "$frozen" "$bytes"
kill -9 $WPID 2>/dev/null; wait $WPID 2>/dev/null
rm -rf $W

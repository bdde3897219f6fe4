#!/usr/bin/env bash
# The private-link testbed, without Docker: network namespaces and real command-line clients.
#
#   tests/e2e/private-link.sh                      # the demo cluster, the gateway, a client host
#   tests/e2e/private-link.sh --config gw.toml     # your gateway configuration and your cluster
#
# A client namespace stands for TiDB Cloud's side of the private link: it reaches only the gateway's
# address, and its own hosts file maps the names the gateway advertises to that address, as TiDB
# Cloud's private DNS does. In it, kcat does what TiDB Cloud's guides do: lists the brokers (expects
# exactly the advertised names and ports), creates a topic, produces 10 messages and consumes them
# back in a group, all counted. Any upstream address reaching the client fails the run loudly.
#
# Without --config, a "kafka" namespace holds the demo cluster (librdkafka's mock cluster: 3 brokers,
# racks us-west-2a/2c/2b) and the gateway with the AWS per-AZ recipe. With --config, the gateway runs
# with your configuration in this host's namespace, where it reaches your cluster; only each
# listener group's bind address is pointed at the link. Run it before you open the private link.
#
# Options: --config FILE   your configuration (default: the demo)
#          --topic NAME    the topic to create and use (default: a new one per run)
#          --keep          leave the namespaces and logs for a look (prints how to clean up)
# Needs root, iproute2 and kcat (scripts/test-tools installs them). Builds the binaries if missing;
# KAFKA_GATEWAY_BIN and DEMO_BIN override them, E2E_SERVE the command that serves a configuration.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONFIG="" TOPIC="" KEEP=0
while (($#)); do
    case $1 in
        --config) CONFIG=$(realpath "$2"); shift 2 ;;
        --topic) TOPIC=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { printf '\n== %s\n' "$*"; }
die() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "network namespaces need root"
command -v ip >/dev/null && command -v kcat >/dev/null || die "needs ip and kcat: run scripts/test-tools"

GATEWAY=${KAFKA_GATEWAY_BIN:-$ROOT/target/debug/kafka-gateway}
DEMO=${DEMO_BIN:-$ROOT/target/debug/examples/demo}
if [ ! -x "$GATEWAY" ] || { [ -z "$CONFIG" ] && [ ! -x "$DEMO" ]; }; then
    say "building the gateway and the demo cluster"
    (cd "$ROOT" && cargo build --quiet --bin kafka-gateway --example demo)
fi
SERVE=${E2E_SERVE:-"$GATEWAY run"}

RUN=kgw$$
CLIENT_NS=$RUN-client
SERVER_NS=""                                   # empty: the host's own namespace
[ -z "$CONFIG" ] && SERVER_NS=$RUN-kafka
NET="10.251.$(($$ % 250))"
SERVER_IP=$NET.1 CLIENT_IP=$NET.2
WORK=$(mktemp -d /tmp/kgw-e2e.XXXXXX)
TOPIC=${TOPIC:-e2e-$RUN-$(date +%s)}
GROUP=e2e-group-$RUN
PIDS=()

cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((KEEP)); then
        echo "kept: namespaces $CLIENT_NS ${SERVER_NS:-}, logs in $WORK"
        echo "clean up: ip netns del $CLIENT_NS; ${SERVER_NS:+ip netns del $SERVER_NS; }rm -rf /etc/netns/$CLIENT_NS $WORK"
    else
        ip netns del "$CLIENT_NS" 2>/dev/null || true
        [ -n "$SERVER_NS" ] && ip netns del "$SERVER_NS" 2>/dev/null || true
        ip link del "${RUN}s" 2>/dev/null || true
        rm -rf "/etc/netns/$CLIENT_NS" "$WORK"
    fi
    if ((status)); then
        echo "the testbed FAILED (status $status)" >&2
    fi
    exit "$status"
}
trap cleanup EXIT INT TERM

# Runs a command on the server side (the kafka namespace, or this host). A prefix rather than only a
# function, so that a background server started with it is itself the job whose pid cleanup kills
# (`ip netns exec` execs the command; a function in the background would be a subshell around it).
SERVER_EXEC=()
[ -n "$SERVER_NS" ] && SERVER_EXEC=(ip netns exec "$SERVER_NS")
on_server() { "${SERVER_EXEC[@]}" "$@"; }
on_client() { ip netns exec "$CLIENT_NS" "$@"; }

say "the private link: client namespace $CLIENT_NS ($CLIENT_IP) reaches only $SERVER_IP"
ip netns add "$CLIENT_NS"
[ -n "$SERVER_NS" ] && ip netns add "$SERVER_NS"
ip link add "${RUN}s" type veth peer name "${RUN}c"
ip link set "${RUN}c" netns "$CLIENT_NS"
[ -n "$SERVER_NS" ] && ip link set "${RUN}s" netns "$SERVER_NS"
on_server ip addr add "$SERVER_IP/30" dev "${RUN}s"
on_server ip link set "${RUN}s" up
on_server ip link set lo up
on_client ip addr add "$CLIENT_IP/30" dev "${RUN}c"
on_client ip link set "${RUN}c" up
on_client ip link set lo up

if [ -z "$CONFIG" ]; then
    say "the demo cluster in $SERVER_NS"
    "${SERVER_EXEC[@]}" "$DEMO" --cluster-only > "$WORK/cluster.out" 2> "$WORK/cluster.log" &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q '^bootstrap ' "$WORK/cluster.out" 2>/dev/null && break; sleep 0.1; done
    UPSTREAM=$(sed -n 's/^bootstrap //p' "$WORK/cluster.out")
    [ -n "$UPSTREAM" ] || die "the demo cluster did not start: $(cat "$WORK/cluster.log")"
    CONFIG=$WORK/gateway.toml
    cat > "$CONFIG" <<EOF
[upstream]
bootstrap_servers = "$UPSTREAM"
[listeners.tidb]
bootstrap_port = 9092
broker_port_base = 9092
advertised = "b{node_id}.{az}.unique_name.aws.plc.tidbcloud.com:{port}"
az_by_rack = { "us-west-2a" = "usw2-az1", "us-west-2c" = "usw2-az2", "us-west-2b" = "usw2-az3" }
EOF
    echo "brokers at $UPSTREAM (unreachable from the client namespace)"
fi

say "kafka-gateway check"
on_server "$GATEWAY" check --config "$CONFIG" | tee "$WORK/check.txt" || die "the gateway's check found problems"
# Rows: GROUP NODE RACK UPSTREAM AZ ADVERTISED LISTEN
mapfile -t ROWS < <(awk '$1 != "GROUP" && $1 != "ok:" && $1 != "cluster" && NF == 7' "$WORK/check.txt")
((${#ROWS[@]})) || die "check listed no brokers"
GROUPS_=$(printf '%s\n' "${ROWS[@]}" | awk '{print $1}' | sort -u)
GROUP1=$(printf '%s\n' "$GROUPS_" | head -1)
UPSTREAMS=$(printf '%s\n' "${ROWS[@]}" | awk '{print $4}' | sort -u)

BIND_OVERRIDES=()
for g in $GROUPS_; do BIND_OVERRIDES+=(--set "listeners.$g.bind=$SERVER_IP"); done
BOOTSTRAP_PORT=$(on_server "$GATEWAY" validate --config "$CONFIG" "${BIND_OVERRIDES[@]}" >/dev/null \
    && grep -A20 "^\[listeners.$GROUP1\]" "$CONFIG" | sed -n 's/^bootstrap_port *= *\([0-9]*\).*/\1/p' | head -1)
[ -n "$BOOTSTRAP_PORT" ] || die "listener group $GROUP1 needs a bootstrap_port for the client to start from"
BOOTSTRAP=$SERVER_IP:$BOOTSTRAP_PORT

say "the gateway, listening on $SERVER_IP"
# shellcheck disable=SC2086 # SERVE is a command line
# shellcheck disable=SC2086 # SERVE is a command line
"${SERVER_EXEC[@]}" $SERVE --config "$CONFIG" "${BIND_OVERRIDES[@]}" > "$WORK/gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do on_client bash -c ">/dev/tcp/$SERVER_IP/$BOOTSTRAP_PORT" 2>/dev/null && break; sleep 0.1; done
on_client bash -c ">/dev/tcp/$SERVER_IP/$BOOTSTRAP_PORT" 2>/dev/null || die "no gateway on $BOOTSTRAP: $(cat "$WORK/gateway.log")"

# The client's private DNS: every advertised name of the first group resolves to the gateway.
mapfile -t EXPECTED < <(printf '%s\n' "${ROWS[@]}" | awk -v g="$GROUP1" '$1 == g {print $2, $6}' | sort -n)
mkdir -p "/etc/netns/$CLIENT_NS"
{
    echo "127.0.0.1 localhost"
    for row in "${EXPECTED[@]}"; do echo "$SERVER_IP ${row#* }" | sed 's/:[0-9]*$//'; done
} > "/etc/netns/$CLIENT_NS/hosts"
echo "client hosts:"; sed 's/^/  /' "/etc/netns/$CLIENT_NS/hosts"

say "1. the brokers, as the client sees them (kcat -L, $(kcat -V 2>&1 | grep -o 'librdkafka [0-9.]*' | head -1))"
on_client kcat -b "$BOOTSTRAP" -L -m 15 > "$WORK/metadata.txt" 2> "$WORK/metadata.log" || die "kcat -L: $(cat "$WORK/metadata.log")"
grep ' broker ' "$WORK/metadata.txt" | tee "$WORK/brokers.txt"
mapfile -t SEEN < <(sed -n 's/^ *broker \([0-9-]*\) at \([^ ]*\).*/\1 \2/p' "$WORK/brokers.txt" | sort -n)
for seen in "${SEEN[@]}"; do
    host=${seen#* }; host=${host%:*}
    for up in $UPSTREAMS; do
        [ "$host" = "${up%:*}" ] && die "LEAK: the client was handed the upstream address of broker $seen"
    done
done
[ "${SEEN[*]}" = "${EXPECTED[*]}" ] || die "LEAK or mismatch: the client saw [${SEEN[*]}], the gateway advertises [${EXPECTED[*]}]"
echo "ok: ${#SEEN[@]} brokers, exactly the advertised names and ports"

say "2. create topic $TOPIC"
on_client kcat -b "$BOOTSTRAP" -L -t "$TOPIC" -X allow.auto.create.topics=true -m 15 > "$WORK/topic.txt" 2>&1 || true
for _ in $(seq 20); do
    on_client kcat -b "$BOOTSTRAP" -L -t "$TOPIC" -m 15 > "$WORK/topic.txt" 2>&1 || true
    grep -q 'partitions:' "$WORK/topic.txt" && ! grep -q 'Broker: Unknown topic' "$WORK/topic.txt" && break
    sleep 0.5
done
grep -q 'partitions:' "$WORK/topic.txt" && ! grep -q 'Broker: Unknown topic' "$WORK/topic.txt" \
    || die "topic $TOPIC was not created (auto.create.topics.enable off? create it first): $(cat "$WORK/topic.txt")"
grep "topic \"$TOPIC\"" "$WORK/topic.txt"

say "3. produce 10 messages, one producer each (as the guides' produce.sh)"
for i in $(seq 10); do
    echo "Test message $i $RUN" | on_client kcat -b "$BOOTSTRAP" -P -t "$TOPIC" -X acks=all -d broker \
        2>> "$WORK/produce.log" || die "producing message $i: $(tail -5 "$WORK/produce.log")"
    echo "Create Test message $i"
done

say "4. consume them back in group $GROUP (as the guides' consume.sh)"
on_client timeout 60 kcat -b "$BOOTSTRAP" -G "$GROUP" -X auto.offset.reset=earliest -c 10 -f '%s\n' -d broker "$TOPIC" \
    > "$WORK/consumed.txt" 2> "$WORK/consume.log" || die "consuming: $(tail -5 "$WORK/consume.log")"
sort "$WORK/consumed.txt" | tee "$WORK/consumed.sorted"
seq 10 | sed "s/.*/Test message & $RUN/" | sort > "$WORK/expected.sorted"
diff -u "$WORK/expected.sorted" "$WORK/consumed.sorted" || die "consumed messages differ from the 10 produced"
echo "ok: 10 produced, 10 consumed, each once"

say "5. every broker connection the clients made went to an advertised name"
# librdkafka names each broker thread after the address it dials: thrd:HOST:PORT/NODE.
grep -oh 'thrd:[^]]*/[0-9-]*\]' "$WORK/produce.log" "$WORK/consume.log" | sed 's/^thrd://; s/\/[0-9-]*\]$//' | sort -u > "$WORK/dialed.txt"
while read -r dialed; do
    printf '%s\n' "${EXPECTED[@]}" | awk '{print $2}' | grep -qxF "$dialed" \
        || [ "$dialed" = "$BOOTSTRAP" ] || die "LEAK: a client dialed $dialed"
done < "$WORK/dialed.txt"
sed 's/^/  /' "$WORK/dialed.txt"

say "PASSED: the client reached the cluster only through the gateway, under the advertised names"

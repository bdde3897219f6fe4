#!/usr/bin/env bash
# The client matrix's kcat (Debian's, on its librdkafka) behind the matrix's common command line:
#   metadata --bootstrap B           `broker ID HOST:PORT` per broker, by id (from kcat -L)
#   produce  --bootstrap B --topic T --count N [--pause-at K]
#                                    message-I lines through kcat (acks=all, idempotent); at K prints
#                                    `paused at K` and waits for a line on stdin; ends with
#                                    `produced N errors E` (E: the messages of a kcat that failed)
#   consume  --bootstrap B --topic T --group G --count N
#                                    kcat -G until N messages; `consumed N distinct D duplicates X`
set -euo pipefail
command=$1
shift
topic=matrix group=matrix-group count=0 pause_at=-1
while (($#)); do
    case $1 in
        --bootstrap) bootstrap=$2 ;;
        --topic) topic=$2 ;;
        --group) group=$2 ;;
        --count) count=$2 ;;
        --pause-at) pause_at=$2 ;;
        --timeout) ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case $command in
metadata)
    kcat -b "$bootstrap" -L -m 15 | sed -n 's/^ *broker \([0-9]*\) at \([^ ]*\).*/broker \1 \2/p' | sort -n -k2
    ;;
produce)
    # kcat reads its stdin to the end before it sends (stdio buffering), so a kcat cannot pause in
    # the middle: each half is one kcat, acks=all and idempotent, whose exit status says whether
    # every message was delivered.
    half() {
        seq "$1" "$2" | sed 's/^/message-/' |
            kcat -b "$bootstrap" -P -t "$topic" -X acks=all -X enable.idempotence=true 2>> "$work/err"
    }
    first=$count
    ((pause_at >= 0 && pause_at < count)) && first=$pause_at
    errors=0
    ((first > 0)) && { half 0 $((first - 1)) || errors=$first; }
    if ((first < count)); then
        echo "paused at $first"
        read -r _
        half "$first" $((count - 1)) || errors=$((errors + count - first))
    fi
    echo "produced $((count - errors)) errors $errors"
    ;;
consume)
    timeout 60 kcat -b "$bootstrap" -G "$group" -X auto.offset.reset=earliest -c "$count" -f '%s\n' "$topic" \
        > "$work/out" 2> "$work/err" || true
    total=$(wc -l < "$work/out")
    distinct=$(sort -u "$work/out" | wc -l)
    echo "consumed $total distinct $distinct duplicates $((total - distinct))"
    ;;
*)
    echo "unknown command $command" >&2
    exit 2
    ;;
esac

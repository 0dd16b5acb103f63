#!/usr/bin/env bash
# A/B of benchmarks/consumer_cpu.py: this checkout's benchmark scripts run against the
# nativekit of two git revisions, on the same topics (produced once), alternately
# A B A B ... for BENCH_AB_PAIRS pairs (default 1), so both see the same broker state
# and machine load. Prints each run's summary table and JSON line; the figures to
# compare are calls per message and CPU seconds per 10k messages.
#
# Usage (the servers module exports NATIVEKIT_TEST_KAFKA_URL / _REDIS_URL):
#   .venv/bin/python -m nativekit.testing.servers -- benchmarks/ab_consumer_cpu.sh main HEAD [args]
# args go to consumer_cpu.py (e.g. --kinds plain,relay --no-faststream).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 REV_A REV_B [consumer_cpu.py arguments]" >&2
    exit 2
fi
root=$(git rev-parse --show-toplevel)
python=${PYTHON:-$root/.venv/bin/python}
rev_a=$1 rev_b=$2
shift 2
pairs=${BENCH_AB_PAIRS:-1}
run=ab$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
tmp=$(mktemp -d)

cleanup() {
    BENCH_RUN=$run "$python" - <<PY || true
import asyncio, os
from nativekit.testing.servers import delete_topics
kafka = os.environ.get("NATIVEKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092")
kinds = ("aiokafka", "plain", "publish", "relay")
asyncio.run(delete_topics(kafka, [f"bench-{k}-$run" for k in kinds]))
PY
    for side in a b; do
        [ -d "$tmp/$side" ] && git -C "$root" worktree remove --force "$tmp/$side"
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

for side in a b; do
    rev=$rev_a
    [ $side = b ] && rev=$rev_b
    git -C "$root" worktree add --detach --quiet "$tmp/$side" "$rev"
    # the same benchmark code on both sides: only nativekit/ differs
    cp "$root"/benchmarks/{consumer_cpu,consumer_throughput,harness}.py "$tmp/$side/benchmarks/"
    echo "$side = $rev ($(git -C "$root" rev-parse --short "$rev"))"
done

produce=1
for pair in $(seq "$pairs"); do
    for side in a b; do
        echo "== pair $pair, side $side (load $(cut -d' ' -f1 /proc/loadavg))"
        (cd "$tmp/$side" && BENCH_RUN=$run BENCH_PRODUCE=$produce BENCH_KEEP=1 \
            "$python" benchmarks/consumer_cpu.py "$@") | sed -n '/^kind /,$p'
        produce=0
    done
done

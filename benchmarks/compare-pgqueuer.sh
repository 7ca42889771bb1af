#!/usr/bin/env bash
# Compares Document Exchanger's broker with pgqueuer 1.6 (Python) on the same
# PostgreSQL server, with the same shape, in the same run:
#
#   benchmarks/compare-pgqueuer.sh [--database URL] [--producers P] [--consumers C]
#       [--batch B] [--messages N] [--payload BYTES] [--only exchanger|pgqueuer]
#
# 1. `exchanger bench broker --database URL --producers P --consumers C
#     --batch B --messages N --payload BYTES` (.build/release/exchanger, built
#     with `swift build -c release --product exchanger` when missing);
# 2. benchmarks/pgqueuer_bench.py with the same options, in a virtualenv under
#    .build-bench/venv (git-ignored) holding pgqueuer==1.6.* and asyncpg;
# 3. prints both result lines, then a final JSON line:
#    {"exchanger_messages_per_second":…, "pgqueuer_messages_per_second":…,
#     "ratio": exchanger/pgqueuer, …latencies and shape…}
#
# Database: --database URL, else $EXCHANGER_DATABASE_URL, else a throwaway
# PostgreSQL started with scripts/postgres-test-server (stopped at the end).
# Each run creates its own tables (pgqueuer's schema is reinstalled), and a
# CHECKPOINT precedes each run so that neither pays for the other's writes.
#
# Defaults: P=2 C=2 B=50 N=50000 BYTES=256. Environment: EXCHANGER_BIN
# (binary), BENCH_VENV (virtualenv dir), PGQUEUER_SPEC (pip requirement,
# default 'pgqueuer[asyncpg]==1.6.*'), PYTHON (python for the venv,
# default python3), BENCH_TIMEOUT (seconds per run, default 1800).
# shellcheck disable=SC2317 # cleanup runs from a trap
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/postgres-test-server
source "$ROOT/scripts/postgres-test-server"

PRODUCERS=2
CONSUMERS=2
BATCH=50
MESSAGES=50000
PAYLOAD=256
DATABASE="${EXCHANGER_DATABASE_URL:-}"
ONLY=""
BIN="${EXCHANGER_BIN:-$ROOT/.build/release/exchanger}"
VENV="${BENCH_VENV:-$ROOT/.build-bench/venv}"
PGQUEUER_SPEC="${PGQUEUER_SPEC:-pgqueuer[asyncpg]==1.6.*}"
PYTHON="${PYTHON:-python3}"
TIMEOUT="${BENCH_TIMEOUT:-1800}"

usage() {
    sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
while [[ $# -gt 0 ]]; do
    case "$1" in
    --producers) PRODUCERS="$2"; shift 2 ;;
    --consumers) CONSUMERS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --messages) MESSAGES="$2"; shift 2 ;;
    --payload) PAYLOAD="$2"; shift 2 ;;
    --database) DATABASE="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "compare-pgqueuer: unknown option $1" >&2; usage 2 ;;
    esac
done
for v in PRODUCERS CONSUMERS BATCH MESSAGES PAYLOAD; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "compare-pgqueuer: --${v,,} must be a positive integer" >&2; exit 2; }
done
case "$ONLY" in "" | exchanger | pgqueuer) ;; *) echo "compare-pgqueuer: --only exchanger|pgqueuer" >&2; exit 2 ;; esac

PG_BASE=""
WORK=""
cleanup() {
    local status=$?
    set +e
    pgts_stop "$PG_BASE"
    [[ -n "$WORK" ]] && rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
WORK="$(mktemp -d)"

# --- what to run -------------------------------------------------------------
if [[ "$ONLY" != pgqueuer && ! -x "$BIN" ]]; then
    echo "==> $BIN missing: swift build -c release --product exchanger" >&2
    swift build -c release --product exchanger >&2
fi

if [[ "$ONLY" != exchanger ]]; then
    # Reuse the venv when it already has a matching pgqueuer and asyncpg.
    if ! "$VENV/bin/python" -c 'import asyncpg, pgqueuer, importlib.metadata as m, sys
sys.exit(0 if m.version("pgqueuer").startswith("1.6.") else 1)' 2>/dev/null; then
        echo "==> creating $VENV with $PGQUEUER_SPEC" >&2
        mkdir -p "$(dirname "$VENV")"
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$PGQUEUER_SPEC" >&2
    fi
    echo "==> pgqueuer $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pgqueuer"), "asyncpg", m.version("asyncpg"))')" >&2
fi

if [[ -z "$DATABASE" ]]; then
    pgts_start bench
    PG_BASE="$PGTS_BASE"
    DATABASE="$PGTS_URL"
fi
echo "==> database $DATABASE; producers=$PRODUCERS consumers=$CONSUMERS batch=$BATCH messages=$MESSAGES payload=$PAYLOAD" >&2

checkpoint() {
    # Best effort: psql may be missing, or the role may lack the right.
    if command -v psql >/dev/null 2>&1; then
        psql "$DATABASE" -qAtc CHECKPOINT >/dev/null 2>&1 || true
    fi
}

# last_json FILE: prints the last non-empty line of FILE if it is a JSON object
# with a numeric messages_per_second; fails otherwise.
last_json() {
    local line
    line="$(grep -v '^[[:space:]]*$' "$1" | tail -n 1 || true)"
    "$PYTHON" -c 'import json, sys
try:
    d = json.loads(sys.argv[1])
    assert isinstance(d.get("messages_per_second"), (int, float))
except Exception:
    sys.exit("compare-pgqueuer: not a result JSON line: " + sys.argv[1][:200])
print(json.dumps(d))' "$line"
}

EX_JSON="null"
PGQ_JSON="null"
SHAPE=(--producers "$PRODUCERS" --consumers "$CONSUMERS" --batch "$BATCH" --messages "$MESSAGES" --payload "$PAYLOAD")

if [[ "$ONLY" != pgqueuer ]]; then
    echo "==> exchanger bench broker" >&2
    checkpoint
    timeout "$TIMEOUT" "$BIN" bench broker --database "$DATABASE" "${SHAPE[@]}" | tee "$WORK/exchanger.out" ||
        { echo "compare-pgqueuer: exchanger bench broker failed (status ${PIPESTATUS[0]})" >&2; exit 1; }
    EX_JSON="$(last_json "$WORK/exchanger.out")" || { echo "compare-pgqueuer: exchanger printed no result JSON line" >&2; exit 1; }
fi

if [[ "$ONLY" != exchanger ]]; then
    echo "==> pgqueuer bench" >&2
    checkpoint
    timeout "$TIMEOUT" "$VENV/bin/python" "$ROOT/benchmarks/pgqueuer_bench.py" --database "$DATABASE" "${SHAPE[@]}" |
        tee "$WORK/pgqueuer.out" ||
        { echo "compare-pgqueuer: pgqueuer bench failed (status ${PIPESTATUS[0]})" >&2; exit 1; }
    PGQ_JSON="$(last_json "$WORK/pgqueuer.out")" || { echo "compare-pgqueuer: pgqueuer bench printed no result JSON line" >&2; exit 1; }
fi

# Final line: both figures and the ratio (ours / pgqueuer's messages per second).
"$PYTHON" - "$EX_JSON" "$PGQ_JSON" "${SHAPE[@]}" <<'EOF'
import json, sys
ex, pq = json.loads(sys.argv[1]), json.loads(sys.argv[2])
shape = dict(zip((a.lstrip("-") for a in sys.argv[3::2]), (int(v) for v in sys.argv[4::2])))
shape["payload_bytes"] = shape.pop("payload")
def get(d, k):
    return d.get(k) if d else None
ex_mps, pq_mps = get(ex, "messages_per_second"), get(pq, "messages_per_second")
out = {
    "exchanger_messages_per_second": ex_mps,
    "pgqueuer_messages_per_second": pq_mps,
    "ratio": round(ex_mps / pq_mps, 3) if ex_mps and pq_mps else None,
    "exchanger_p50_latency_ms": get(ex, "p50_latency_ms"),
    "exchanger_p99_latency_ms": get(ex, "p99_latency_ms"),
    "pgqueuer_p50_latency_ms": get(pq, "p50_latency_ms"),
    "pgqueuer_p99_latency_ms": get(pq, "p99_latency_ms"),
    "pgqueuer_version": get(pq, "pgqueuer_version"),
    **shape,
}
print(json.dumps(out))
EOF

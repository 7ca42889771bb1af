#!/usr/bin/env python3
"""Throughput/latency benchmark of pgqueuer 1.6, shaped like `exchanger bench broker`.

    python pgqueuer_bench.py --database URL --producers 2 --consumers 2 \
        --batch 50 --messages 50000 --payload 256

What it does, in the idiomatic pgqueuer 1.6 way (asyncpg driver, as in
pgqueuer's README and its own tools/benchmark.py):

* installs pgqueuer's schema in the database (`Queries.install()`, the SQL
  that `pgq install` runs; durable/logged tables, the default), after
  uninstalling an existing one unless --no-reinstall;
* starts C consumer *processes*, each running one `PgQueuer` with one
  entrypoint, `pgq.run(batch_size=B)`: jobs are dequeued B at a time and
  completed (acked) by pgqueuer's batched job-status log when the handler
  returns;
* starts P producer *processes*, each enqueueing N/P jobs with the batch API
  `Queries.enqueue([entrypoint] * b, payloads, priorities)`, b = B per call;
* each payload starts with the send time (`time.time_ns()`, taken just before
  the enqueue call) and a unique id, padded with b"x" to --payload bytes;
  the handler computes enqueue -> receive latency from it;
* wall time runs from the first enqueue call to the moment every job is
  completed: all N handled *and* pgqueuer's queue table empty (pgqueuer
  deletes a job's row when it records its completion);
* stops every process, checks that each job was received exactly once, and
  prints one JSON line (last line on stdout) with messages_per_second,
  p50_latency_ms, p99_latency_ms, messages and more. Progress goes to stderr.

The database URL may also come from EXCHANGER_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing as mp
import os
import queue
import sys
import time
from array import array
from datetime import timedelta
from typing import Any

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

try:  # pgqueuer's CLI runs on uvloop when it is installed (it is a dependency on Linux)
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

# Unique job id = producer index * ID_STRIDE + sequence number within that producer.
ID_STRIDE = 1_000_000_000


def log(msg: str) -> None:
    print(f"pgqueuer_bench: {msg}", file=sys.stderr, flush=True)


def run_async(coro: Any) -> Any:
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)


async def make_driver(dsn: str, driver: str) -> tuple[Any, Any]:
    """Returns (pgqueuer driver, closer)."""
    if driver == "asyncpg":
        conn = await asyncpg.connect(dsn=dsn)
        return AsyncpgDriver(conn), conn.close
    pool = await asyncpg.create_pool(dsn=dsn, min_size=2, max_size=4)
    assert pool is not None
    return AsyncpgPoolDriver(pool), pool.close


def make_payload(ts_ns: int, job_id: int, size: int) -> bytes:
    head = b"%d %d " % (ts_ns, job_id)
    return head.ljust(size, b"x")  # longer than size only if size < ~30 bytes


# --------------------------------------------------------------------------- producers


async def producer_async(
    idx: int, dsn: str, driver: str, count: int, batch: int, size: int, entrypoint: str,
    start_evt: Any, ready_q: Any, result_q: Any,
) -> None:
    drv, close = await make_driver(dsn, driver)
    queries = Queries(drv)
    ready_q.put(("producer", idx))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, start_evt.wait)

    first_ns = 0
    seq = 0
    while seq < count:
        n = min(batch, count - seq)
        ts = time.time_ns()
        if not first_ns:
            first_ns = ts
        base_id = idx * ID_STRIDE + seq
        payloads: list[bytes | None] = [make_payload(ts, base_id + i, size) for i in range(n)]
        await queries.enqueue([entrypoint] * n, payloads, [0] * n)
        seq += n
    done_ns = time.time_ns()
    await close()
    result_q.put(("producer", idx, first_ns, done_ns, count))


def producer_main(*args: Any) -> None:
    logging.getLogger("pgqueuer").setLevel(logging.WARNING)
    run_async(producer_async(*args))


# --------------------------------------------------------------------------- consumers


async def consumer_async(
    idx: int, dsn: str, driver: str, batch: int, entrypoint: str, dequeue_timeout: float,
    counter: Any, stop_evt: Any, ready_q: Any, result_q: Any,
) -> None:
    drv, close = await make_driver(dsn, driver)
    pgq = PgQueuer(drv)
    latencies = array("q")
    ids = array("q")
    first_receive = [0]

    @pgq.entrypoint(entrypoint)
    async def handle(job: Job) -> None:
        now = time.time_ns()
        if not first_receive[0]:
            first_receive[0] = now
        assert job.payload is not None
        ts, job_id, _ = job.payload.split(b" ", 2)
        latencies.append(now - int(ts))
        ids.append(int(job_id))
        with counter.get_lock():
            counter.value += 1

    async def stop_when_told() -> None:
        await asyncio.get_running_loop().run_in_executor(None, stop_evt.wait)
        pgq.shutdown.set()  # pgq.run() flushes its buffers and returns

    stopper = asyncio.create_task(stop_when_told())
    ready_q.put(("consumer", idx))
    await pgq.run(batch_size=batch, dequeue_timeout=timedelta(seconds=dequeue_timeout))
    stopper.cancel()
    await close()
    result_q.put(("consumer", idx, latencies.tobytes(), ids.tobytes(), first_receive[0]))


def consumer_main(*args: Any) -> None:
    logging.getLogger("pgqueuer").setLevel(logging.WARNING)
    run_async(consumer_async(*args))


# --------------------------------------------------------------------------- coordinator


async def install_schema(dsn: str, reinstall: bool) -> str:
    """Installs pgqueuer's schema; returns the queue table's qualified name."""
    conn = await asyncpg.connect(dsn=dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        table = queries.qbq.qualified.queue_table
        if await queries.has_table(queries.qbe.settings.queue_table):
            if not reinstall:
                log("pgqueuer schema present; clearing its queue and log (--no-reinstall)")
                await queries.clear_queue()
                await queries.clear_queue_log()
                await queries.clear_statistics_log()
                return table
            log("uninstalling the existing pgqueuer schema")
            await queries.uninstall()
        log("installing the pgqueuer schema (pgq install)")
        await queries.install()
        # Start from clean buffers/WAL, as the exchanger run does (best effort:
        # CHECKPOINT needs superuser or pg_checkpoint).
        try:
            await conn.execute("CHECKPOINT")
        except asyncpg.PostgresError as e:
            log(f"CHECKPOINT skipped: {e}")
        return table
    finally:
        await conn.close()


def percentile(sorted_values: list[int], p: float) -> float:
    """Nearest-rank percentile of ns values, in ms."""
    if not sorted_values:
        return float("nan")
    k = max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1)
    return sorted_values[k] / 1e6


async def coordinate(args: argparse.Namespace) -> int:
    n, p, c = args.messages, args.producers, args.consumers
    table = await install_schema(args.database, not args.no_reinstall)

    ctx = mp.get_context("spawn")  # no inherited event loops or connections
    counter = ctx.Value("q", 0)
    start_evt, stop_evt = ctx.Event(), ctx.Event()
    ready_q, result_q = ctx.Queue(), ctx.Queue()
    procs: list[Any] = []
    results: list[tuple[Any, ...]] = []
    try:
        for i in range(c):
            procs.append(ctx.Process(
                target=consumer_main, name=f"consumer-{i}",
                args=(i, args.database, args.driver, args.batch, args.entrypoint,
                      args.dequeue_timeout, counter, stop_evt, ready_q, result_q)))
        per, extra = divmod(n, p)
        for i in range(p):
            procs.append(ctx.Process(
                target=producer_main, name=f"producer-{i}",
                args=(i, args.database, args.driver, per + (1 if i < extra else 0),
                      args.batch, args.payload, args.entrypoint, start_evt, ready_q, result_q)))
        for proc in procs:
            proc.start()

        deadline = time.monotonic() + args.timeout

        def check_alive() -> None:
            for proc in procs:
                if proc.exitcode not in (None, 0):
                    raise RuntimeError(f"{proc.name} died with exit code {proc.exitcode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done after {args.timeout}s "
                                   f"({counter.value}/{n} jobs handled)")

        ready = 0
        while ready < len(procs):
            try:
                ready_q.get(timeout=0.1)
                ready += 1
            except queue.Empty:
                check_alive()
        # Let consumers reach their LISTEN/dequeue loop before the clock starts.
        await asyncio.sleep(args.settle)
        log(f"{c} consumers and {p} producers ready; enqueueing {n} jobs "
            f"(batch {args.batch}, payload {args.payload} B)")

        poll = await asyncpg.connect(dsn=args.database)
        start_evt.set()
        # Cheap wait on the shared counter first; the database is only polled
        # at the very end, for the last completions (pgqueuer batches them).
        while counter.value < n:
            await asyncio.sleep(0.002)
            check_alive()
        while await poll.fetchval(f"SELECT count(*) FROM {table}") > 0:
            await asyncio.sleep(0.002)
            check_alive()
        end_ns = time.time_ns()
        await poll.close()

        stop_evt.set()
        while len(results) < len(procs):
            try:
                results.append(result_q.get(timeout=0.1))
            except queue.Empty:
                check_alive()
        for proc in procs:
            proc.join(timeout=30)
    finally:
        start_evt.set()
        stop_evt.set()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()

    first_ns = min(r[2] for r in results if r[0] == "producer")
    enqueue_done_ns = max(r[3] for r in results if r[0] == "producer")
    first_receive_ns = min((r[4] for r in results if r[0] == "consumer" and r[4]), default=0)
    latencies: list[int] = []
    ids = array("q")
    for r in results:
        if r[0] == "consumer":
            lat = array("q")
            lat.frombytes(r[2])
            latencies.extend(lat)
            ids.frombytes(r[3])
    latencies.sort()
    unique = len(set(ids))
    seconds = (end_ns - first_ns) / 1e9
    from importlib.metadata import version

    out = {
        "system": "pgqueuer",
        "pgqueuer_version": version("pgqueuer"),
        "driver": args.driver,
        "producers": p,
        "consumers": c,
        "batch": args.batch,
        "payload_bytes": args.payload,
        "messages": n,
        "received": len(ids),
        "duplicates": len(ids) - unique,
        "seconds": round(seconds, 4),
        "messages_per_second": round(n / seconds, 1),
        "enqueue_seconds": round((enqueue_done_ns - first_ns) / 1e9, 4),
        "first_receive_ms": round((first_receive_ns - first_ns) / 1e6, 3) if first_receive_ns else None,
        "p50_latency_ms": round(percentile(latencies, 50), 3),
        "p90_latency_ms": round(percentile(latencies, 90), 3),
        "p99_latency_ms": round(percentile(latencies, 99), 3),
        "max_latency_ms": round(latencies[-1] / 1e6, 3) if latencies else None,
    }
    print(json.dumps(out), flush=True)
    if unique != n:
        log(f"ERROR: {unique} distinct jobs received, expected {n}")
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", default=os.environ.get("EXCHANGER_DATABASE_URL"),
                    help="PostgreSQL URL (default: $EXCHANGER_DATABASE_URL)")
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=50,
                    help="jobs per enqueue call, and the consumers' batch_size")
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--payload", type=int, default=256, help="payload bytes per job")
    ap.add_argument("--driver", choices=["asyncpg", "asyncpg-pool"], default="asyncpg",
                    help="asyncpg: one connection per process (pgqueuer's README); "
                         "asyncpg-pool: AsyncpgPoolDriver")
    ap.add_argument("--entrypoint", default="exchanger_bench")
    ap.add_argument("--dequeue-timeout", type=float, default=30.0,
                    help="pgqueuer's dequeue_timeout in seconds (its default: 30)")
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds between all processes ready and the start (not timed)")
    ap.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    ap.add_argument("--no-reinstall", action="store_true",
                    help="keep an existing pgqueuer schema (clear it) instead of reinstalling")
    args = ap.parse_args()
    if not args.database:
        ap.error("--database or EXCHANGER_DATABASE_URL is required")
    for name in ("producers", "consumers", "batch", "messages", "payload"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    logging.basicConfig(level=logging.WARNING)
    try:
        return run_async(coordinate(args))
    except (RuntimeError, TimeoutError) as e:
        log(f"ERROR: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())

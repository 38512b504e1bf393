"""Throughput of the RESP reply parsers on one realistic byte stream.

Run it as a script, not as a test::

    python benchmarks/bench_parser.py            # 200,000 replies, 7 repeats
    python benchmarks/bench_parser.py --quick    # 20,000 replies, 3 repeats: seconds

The stream is a seeded mix of what a cache-like workload reads back: ``+OK``,
integers, small bulk strings, 1 KiB bulk strings and arrays of ten bulk strings
(``MGET``/``LRANGE``). Every parser reads the very same bytes, cut into the same
64 KiB pieces a socket would return, and the table shows the median over the
repeats of the CPU time each run took (``time.process_time``: on a shared machine
it is far steadier than wall time). The parsers take turns within each repeat,
so a slow patch of the machine hurts them all alike, and a warm-up round is not
counted:

* ``RespParser``: ours, fed chunk by chunk, each chunk drained with
  ``next_reply`` until ``NEED_DATA``.
* ``redis-py _RESP2Parser``: redis-py's pure-Python sync parser, its
  ``SocketBuffer`` reading from a fake socket whose ``recv`` returns the next
  chunk. That is exactly its production path (``read_response`` with its
  ``io.BytesIO`` buffering, rewind/purge bookkeeping and ``Encoder.decode``)
  minus the system call, so it is the reference the ratio column uses.
* ``redis-py _AsyncRESP2Parser``: redis-py's asyncio parser, reading from a real
  ``asyncio.StreamReader`` into which the whole stream was fed beforehand, so no
  read ever suspends; its coroutines are run inside ``asyncio.run``.
* ``hiredis.Reader`` raw: the C parser alone, with no limits and hiredis's own
  value mapping; the ceiling any hiredis-based parser can reach.

redis-py's parsers count every reply too, so all rows do the same work: parse
each reply into Python objects once.

A second table times single replies of the shapes a session store reads, each
parsed over and over by one parser kept across replies (as a connection keeps
it): an ``SMEMBERS`` of 1,000 small members, an ``HGETALL`` of 10 fields, one
``GET`` reply, and a 1 MiB bulk string arriving in 64 KiB pieces. Rows:
``RespParser`` and raw ``hiredis.Reader`` with no limits, the floor (a
hiredis-based parser that enforces the limits must add its checks to it, which
is why the library has no such parser any more). Rounds interleave
the rows; each cell is the median time per reply, and the ratio column divides
by the raw hiredis floor.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trio_redisha.resp import NEED_DATA, RespParser

CHUNK = 64 * 1024


def build_stream(replies: int, seed: int = 1) -> bytes:
    """Return ``replies`` RESP2 replies of a realistic mix, as one byte string."""
    rng = random.Random(seed)
    kilobyte = bytes(rng.randrange(256) for _ in range(1024))
    out: list[bytes] = []
    for _ in range(replies):
        kind = rng.random()
        if kind < 0.20:
            out.append(b"+OK\r\n")
        elif kind < 0.40:
            out.append(b":%d\r\n" % rng.randrange(-(10**6), 10**9))
        elif kind < 0.70:
            value = b"value:%d" % rng.randrange(10**8)
            out.append(b"$%d\r\n%s\r\n" % (len(value), value))
        elif kind < 0.80:
            out.append(b"$1024\r\n" + kilobyte + b"\r\n")
        else:
            items = [b"item:%d" % rng.randrange(10**6) for _ in range(10)]
            out.append(b"*10\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(i), i) for i in items))
    return b"".join(out)


def chunks_of(stream: bytes) -> list[bytes]:
    """Cut the stream into the pieces a socket would return."""
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


def run_ours(factory: Callable[[], Any], chunks: list[bytes], expected: int) -> float:
    """Time one of our parsers over the chunks; return seconds."""
    parser = factory()
    feed = parser.feed
    next_reply = parser.next_reply
    count = 0
    start = time.process_time()
    for chunk in chunks:
        feed(chunk)
        while next_reply() is not NEED_DATA:
            count += 1
    elapsed = time.process_time() - start
    assert count == expected, (count, expected)
    return elapsed


def run_hiredis_raw(chunks: list[bytes], expected: int) -> float:
    """Time a bare hiredis.Reader over the chunks; return seconds."""
    import hiredis

    reader = hiredis.Reader()
    feed = reader.feed
    gets = reader.gets
    count = 0
    start = time.process_time()
    for chunk in chunks:
        feed(chunk)
        while gets() is not False:  # the stream has no RESP3 false
            count += 1
    elapsed = time.process_time() - start
    assert count == expected, (count, expected)
    return elapsed


class _FakeSocket:
    """A socket whose ``recv`` returns the next prepared chunk."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = iter(chunks)

    def recv(self, size: int) -> bytes:
        return next(self._chunks, b"")

    def settimeout(self, timeout: float | None) -> None:
        pass


def run_redis_py_sync(chunks: list[bytes], expected: int) -> float:
    """Time redis-py's pure-Python sync parser; return seconds."""
    parsers: Any = importlib.import_module("redis._parsers")
    socket_buffer: Any = importlib.import_module("redis._parsers.socket").SocketBuffer

    parser = parsers._RESP2Parser(socket_read_size=CHUNK)
    sock = _FakeSocket(chunks)
    # What on_connect() does, without a Connection object.
    parser._sock = sock
    parser._buffer = socket_buffer(sock, CHUNK, None)
    parser.encoder = parsers.Encoder("utf-8", "strict", False)
    read_response = parser.read_response
    start = time.process_time()
    for _ in range(expected):
        read_response()
    elapsed = time.process_time() - start
    parser._buffer = None  # keep its __del__ from closing a socket it doesn't own
    return elapsed


def run_redis_py_async(stream: bytes, expected: int) -> float:
    """Time redis-py's pure-Python asyncio parser; return seconds."""
    parsers: Any = importlib.import_module("redis._parsers")

    async def main() -> float:
        reader = asyncio.StreamReader(limit=2**31)
        reader.feed_data(stream)
        reader.feed_eof()
        parser = parsers._AsyncRESP2Parser(socket_read_size=CHUNK)
        # What on_connect() does, without a Connection object.
        parser._stream = reader
        parser.encoder = parsers.Encoder("utf-8", "strict", False)
        parser._connected = True
        read_response = parser.read_response
        start = time.process_time()
        for _ in range(expected):
            await read_response()
        return time.process_time() - start

    return asyncio.run(main())


def shapes() -> list[tuple[str, list[bytes], int]]:
    """The single replies of the second table: name, chunks, replies per run."""
    members = [b"member:%d" % i for i in range(1000)]
    smembers = b"*1000\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(m), m) for m in members)
    fields = [b"field:%d" % i for i in range(10)]
    pairs = [x for f in fields for x in (f, b"value of " + f + b" " * 40)]
    hgetall = b"*20\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in pairs)
    value = b"s" * 200
    get = b"$%d\r\n%s\r\n" % (len(value), value)
    big = b"$%d\r\n%s\r\n" % (2**20, b"x" * 2**20)
    # Misses among hits (RESP2 nils): each nil once cost a failed batch of 8 KiB.
    mget = b"*1000\r\n" + b"".join(
        b"$-1\r\n" if i % 2 else b"$%d\r\n%s\r\n" % (len(m), m) for i, m in enumerate(members)
    )
    return [
        ("SMEMBERS, 1,000 members", [smembers], 300),
        ("MGET, 1,000 keys, half missing", [mget], 300),
        ("HGETALL, 10 fields", [hgetall], 20_000),
        ("GET, 200 bytes", [get], 50_000),
        ("1 MiB bulk, 64 KiB pieces", chunks_of(big), 100),
    ]


def run_shape_ours(factory: Callable[[], Any], chunks: list[bytes], count: int) -> float:
    """Time one of our parsers over ``count`` copies of one reply; return s/reply."""
    parser = factory()
    feed = parser.feed
    next_reply = parser.next_reply
    single = chunks[0] if len(chunks) == 1 else None
    start = time.process_time()
    if single is not None:
        for _ in range(count):
            feed(single)
            next_reply()
    else:
        for _ in range(count):
            for chunk in chunks:
                feed(chunk)
                reply = next_reply()
            assert reply is not NEED_DATA
    return (time.process_time() - start) / count


def run_shape_raw(chunks: list[bytes], count: int) -> float:
    """Time a bare hiredis.Reader over ``count`` copies of one reply; return s/reply."""
    import hiredis

    reader = hiredis.Reader()
    feed = reader.feed
    gets = reader.gets
    single = chunks[0] if len(chunks) == 1 else None
    start = time.process_time()
    if single is not None:
        for _ in range(count):
            feed(single)
            gets()
    else:
        for _ in range(count):
            for chunk in chunks:
                feed(chunk)
                reply = gets()
            assert reply is not False
    return (time.process_time() - start) / count


def shape_table(repeats: int, quick: bool) -> None:
    """Time every parser on each single-reply shape and print the table."""
    rows: list[tuple[str, Callable[[list[bytes], int], float]]] = [
        ("RespParser", lambda c, k: run_shape_ours(RespParser, c, k)),
    ]
    if have("hiredis"):
        rows.append(("hiredis.Reader (raw, floor)", run_shape_raw))
    names = [name for name, _ in rows]
    print()
    print(f"Single replies: median time per reply over {repeats} interleaved rounds")
    header = f"{'reply':<27}" + "".join(f"{name:>29}" for name in names)
    print(header)
    print("-" * len(header))
    for shape, chunks, count in shapes():
        if quick:
            count = max(count // 10, 10)
        for _, run in rows:
            run(chunks, max(count // 10, 1))  # warm-up
        times: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(repeats):
            for name, run in rows:
                gc.collect()
                times[name].append(run(chunks, count))
        medians = {name: statistics.median(values) for name, values in times.items()}
        floor = medians.get("hiredis.Reader (raw, floor)")
        cells = []
        for name in names:
            ratio = f" ({medians[name] / floor:5.1f}x)" if floor else ""
            cells.append(f"{medians[name] * 1e6:>19.2f} us{ratio}")
        print(f"{shape:<27}" + "".join(f"{cell:>29}" for cell in cells))


def have(module: str) -> bool:
    """Whether a module can be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    """Build the stream, time every available parser and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k replies, 3 repeats")
    parser.add_argument("--replies", type=int, help="number of replies in the stream")
    parser.add_argument("--repeats", type=int, help="timed runs per parser")
    args = parser.parse_args(argv)
    replies = args.replies or (20_000 if args.quick else 200_000)
    repeats = args.repeats or (3 if args.quick else 7)

    stream = build_stream(replies)
    chunks = chunks_of(stream)
    runners: list[tuple[str, Callable[[], float]]] = [
        ("trio_redisha RespParser", lambda: run_ours(RespParser, chunks, replies)),
    ]
    if have("redis"):
        runners.append(
            ("redis-py _RESP2Parser", lambda: run_redis_py_sync(chunks, replies)),
        )
        runners.append(
            ("redis-py _AsyncRESP2Parser", lambda: run_redis_py_async(stream, replies)),
        )
    if have("hiredis"):
        runners.append(("hiredis.Reader (raw)", lambda: run_hiredis_raw(chunks, replies)))

    print(
        f"{replies:,} replies, {len(stream) / 2**20:.1f} MiB in {len(chunks)} chunks "
        f"of {CHUNK // 1024} KiB; median of {repeats} runs (Python {sys.version.split()[0]})"
    )
    for _, run in runners:
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name, _ in runners}
    for _ in range(repeats):
        for name, run in runners:
            gc.collect()
            times[name].append(run())
    medians = {name: statistics.median(values) for name, values in times.items()}

    reference = medians.get("redis-py _RESP2Parser")
    header = f"{'parser':<28} {'replies/s':>12} {'us/reply':>9} {'vs redis-py pure':>17}"
    print(header)
    print("-" * len(header))
    for name, seconds in medians.items():
        ratio = f"{reference / seconds:16.2f}x" if reference else f"{'n/a':>17}"
        print(f"{name:<28} {replies / seconds:12,.0f} {seconds / replies * 1e6:9.2f} {ratio}")
    shape_table(repeats, args.quick)


if __name__ == "__main__":
    main()

"""python-websockets (10.4, asyncio API) client peer for the lua-ws interop tests.

    /usr/bin/python3 spec/peers/py_client.py ws://127.0.0.1:PORT/ws

Talks to an echo server and prints one JSON line per check:
  {"test": "echo", "kind": "text"|"binary", "size": N, "got_kind": ..., "got_size": N,
   "sent_sha": ..., "got_sha": ...}
  {"test": "fragmented", "kind": ..., "sent_sha": ..., "got_sha": ..., "got_kind": ...}
  {"test": "ping", "ok": true}
  {"test": "close", "sent_code": C, "sent_reason": R, "code": ..., "reason": ...}
  {"test": "error", "error": "..."} if anything raised
Exit status 0 once every check ran (the spec judges the results).
"""
import asyncio
import os
import random
import sys

import websockets

from peer_util import emit, sha, utf8_text

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]


async def echo(ws, data):
    await ws.send(data)
    got = await asyncio.wait_for(ws.recv(), 60)
    return got


def as_bytes(m):
    return m.encode() if isinstance(m, str) else m


def kind_of(m):
    return "text" if isinstance(m, str) else "binary"


async def main(url):
    rng = random.Random(6455)
    opts = dict(max_size=None, ping_interval=None, open_timeout=10, close_timeout=5,
                compression=None)
    async with websockets.connect(url, **opts) as ws:
        for kind in ("text", "binary"):
            for n in SIZES:
                data = utf8_text(n, rng) if kind == "text" else os.urandom(n)
                got = await echo(ws, data)
                emit(test="echo", kind=kind, size=n, got_kind=kind_of(got),
                     got_size=len(as_bytes(got)), sent_sha=sha(as_bytes(data)),
                     got_sha=sha(as_bytes(got)))

        # fragmented: websockets sends an iterable as one fragmented message
        for kind, chunks in (("text", ["fragmented ", "", "héllo wörld ", "€😀"]),
                             ("binary", [os.urandom(1000), os.urandom(70000), b"", os.urandom(5)])):
            got = await asyncio.wait_for(echo(ws, chunks), 30)
            whole = "".join(chunks) if kind == "text" else b"".join(chunks)
            emit(test="fragmented", kind=kind, got_kind=kind_of(got), sent_sha=sha(as_bytes(whole)),
                 got_sha=sha(as_bytes(got)))

        waiter = await ws.ping(b"py-ping")
        await asyncio.wait_for(waiter, 10)
        emit(test="ping", ok=True)

        await ws.close(1000, "normal bye")
        emit(test="close", sent_code=1000, sent_reason="normal bye",
             code=ws.close_code, reason=ws.close_reason)

    async with websockets.connect(url, **opts) as ws:
        await ws.send("one more")
        assert await asyncio.wait_for(ws.recv(), 10) == "one more"
        await ws.close(4000, "bye from python ✓")
        emit(test="close", sent_code=4000, sent_reason="bye from python ✓",
             code=ws.close_code, reason=ws.close_reason)


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), 90))
    except Exception as e:
        emit(test="error", error=repr(e))
        sys.exit(1)

"""python-websockets (10.4) peer for the permessage-deflate tests (spec/deflate_spec.lua).

    /usr/bin/python3 spec/peers/deflate_py.py client URL SIZES_JSON [OFFER_JSON]
        Connects with compression="deflate" (the default offer), or with
        ClientPerMessageDeflateFactory(**OFFER_JSON), echoes text and binary
        messages of the given sizes (compressible, random, and the same random
        data again, which a compressor may refer back to) and prints one JSON
        line per check:
          {"test": "open", "header": <Sec-WebSocket-Extensions answer>, "extensions": [...],
           "windows": [[local_max_window_bits, remote_max_window_bits], ...]}
          {"test": "echo", "kind": ..., "data": "compressible"|"random"|"again", "size": N,
           "got_kind": ..., "got_size": N, "same": bool, "compressed_frames": N}
          {"test": "close", "code": N}
          {"test": "error", "error": "..."} if anything raised

    /usr/bin/python3 spec/peers/deflate_py.py server PORT [ACCEPT_JSON]
        An echo server with compression="deflate" (websockets compresses every
        message it sends), or with ServerPerMessageDeflateFactory(**ACCEPT_JSON).
        websockets inflates with exactly the window agreed, so 8 bits means a
        256-byte window. The text "__stats__" is answered with
          {"compressed_frames": N, "messages": N, "header": "..."}
        Prints {"event": "listening", "port": P} once it listens.
"""
import asyncio
import json
import os
import random
import sys

import websockets
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory)

from peer_util import emit, sha, utf8_text


def compressible(n):
    phrase = b"the quick brown fox jumps over the lazy dog; "
    return (phrase * (n // len(phrase) + 1))[:n]


def count_compressed(ws):
    """Count frames that arrive with RSV1: wrap the extension's decode."""
    ws.compressed_frames = 0
    for ext in ws.extensions:
        orig = ext.decode

        def decode(frame, *, max_size=None, orig=orig):
            if frame.rsv1:
                ws.compressed_frames += 1
            return orig(frame, max_size=max_size)

        ext.decode = decode


def deflate_options(factory, args):
    """compression= and extensions= for websockets: its default, or factory(**json)."""
    if not args:
        return {"compression": "deflate"}
    return {"compression": None, "extensions": [factory(**json.loads(args[0]))]}


async def client(url, sizes, offer):
    rng = random.Random(7)
    async with websockets.connect(url, max_size=64 << 20, open_timeout=10, close_timeout=5,
                                  **deflate_options(ClientPerMessageDeflateFactory, offer)) as ws:
        count_compressed(ws)
        emit(test="open", header=ws.response_headers.get("Sec-WebSocket-Extensions"),
             extensions=[type(e).__name__ for e in ws.extensions],
             windows=[[e.local_max_window_bits, e.remote_max_window_bits] for e in ws.extensions])
        for kind in ("text", "binary"):
            for n in sizes:
                for what in ("compressible", "random", "again"):
                    if what == "compressible":
                        data = compressible(n)
                        data = data.decode() if kind == "text" else data
                    elif what == "random":
                        data = utf8_text(n, rng) if kind == "text" else os.urandom(n)
                    # "again": the random data once more
                    before = ws.compressed_frames
                    await ws.send(data)
                    got = await asyncio.wait_for(ws.recv(), 30)
                    raw = data.encode() if isinstance(data, str) else data
                    graw = got.encode() if isinstance(got, str) else got
                    emit(test="echo", kind=kind, data=what, size=n,
                         got_kind="text" if isinstance(got, str) else "binary",
                         got_size=len(graw), same=sha(raw) == sha(graw),
                         compressed_frames=ws.compressed_frames - before)
        await ws.close()
        emit(test="close", code=ws.close_code)


async def server(port, accept):
    async def handler(ws, path=None):
        count_compressed(ws)
        messages = 0
        async for msg in ws:
            messages += 1
            if msg == "__stats__":
                await ws.send(json.dumps({
                    "compressed_frames": ws.compressed_frames, "messages": messages,
                    "header": ws.response_headers.get("Sec-WebSocket-Extensions")}))
            else:
                await ws.send(msg)

    async with websockets.serve(handler, "127.0.0.1", port, max_size=64 << 20,
                                **deflate_options(ServerPerMessageDeflateFactory, accept)):
        emit(event="listening", port=port)
        await asyncio.Future()


def main():
    mode, where = sys.argv[1], sys.argv[2]
    if mode == "client":
        try:
            asyncio.run(client(where, json.loads(sys.argv[3]), sys.argv[4:]))
        except Exception as e:  # report, the spec judges
            emit(test="error", error=repr(e))
            sys.exit(1)
    else:
        asyncio.run(server(int(where), sys.argv[3:]))


main()

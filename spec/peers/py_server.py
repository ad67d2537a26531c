"""python-websockets (10.4, asyncio API) server peer for the lua-ws interop tests.

    /usr/bin/python3 spec/peers/py_server.py --port P [--cert F --key F] [--mode M] [--code C --reason R]
        [--ping-interval S --ping-timeout S]

Every connection gets a mode: the request path if it names one (/echo,
/fragment, /ping, /close?code=C&reason=R), else --mode (default echo).
  echo      echo every message with its type (str/bytes)
  fragment  send a fragmented text and a fragmented binary message, then echo
  ping      ping with b"ping-from-python"; once the pong arrives, report it
            as a JSON line and send the text "pong:<payload>", then echo
  close     close at once with the given code and reason
Every close is reported as a JSON line on stdout:
  {"event": "close", "mode": ..., "code": N, "reason": "..."}
"""
import argparse
import asyncio
import signal
import ssl
import sys
from urllib.parse import urlsplit, parse_qs

import websockets

from peer_util import emit

FRAG_TEXT = ["héllo ", "", "wörld ", "€😀"]
FRAG_BIN = [bytes((i * 7 + k) & 0xFF for i in range(70000)) for k in range(3)]


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--mode", default="echo")
    p.add_argument("--code", type=int, default=1000)
    p.add_argument("--reason", default="")
    p.add_argument("--ping-interval", type=float, default=None)   # keepalive: off by default
    p.add_argument("--ping-timeout", type=float, default=None)
    return p.parse_args()


ARGS = parse_args()


async def handler(ws):
    url = urlsplit(ws.path)
    name = url.path.lstrip("/")
    mode = name if name in ("echo", "fragment", "ping", "close") else ARGS.mode
    try:
        if mode == "fragment":
            await ws.send(FRAG_TEXT)
            await ws.send(FRAG_BIN)
        elif mode == "ping":
            payload = b"ping-from-python"
            waiter = await ws.ping(payload)
            # the pong is read by the connection's reader task while we wait
            await asyncio.wait_for(waiter, 10)
            emit(event="pong", data=payload.decode())
            await ws.send("pong:" + payload.decode())
        elif mode == "close":
            q = parse_qs(url.query)
            code = int(q.get("code", [ARGS.code])[0])
            reason = q.get("reason", [ARGS.reason])[0]
            await ws.close(code, reason)
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    except Exception as e:  # report, never hang
        emit(event="error", mode=mode, error=repr(e))
    await ws.wait_closed()
    emit(event="close", mode=mode, code=ws.close_code, reason=ws.close_reason)


async def main():
    ctx = None
    if ARGS.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.cert, ARGS.key)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with websockets.serve(handler, "127.0.0.1", ARGS.port, ssl=ctx, max_size=None,
                                ping_interval=ARGS.ping_interval, ping_timeout=ARGS.ping_timeout,
                                compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        emit(event="listening", port=port)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)

"""python3-websockets 10.4 fan-out server on /ws: every message goes to all
the other clients with websockets.broadcast().
  /usr/bin/python3 py_fanout.py PORT"""
import asyncio
import sys

import websockets

clients = set()


async def relay(sock, path):
    if path != "/ws":
        return
    clients.add(sock)
    try:
        async for message in sock:
            websockets.broadcast([c for c in clients if c is not sock], message)
    except websockets.ConnectionClosed:
        pass
    finally:
        clients.discard(sock)


async def main(port):
    async with websockets.serve(relay, "127.0.0.1", port, compression=None,
                                max_size=16 << 20, ping_interval=None):
        print(f"python websockets fan-out on {port}", file=sys.stderr)
        await asyncio.Future()


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8080))

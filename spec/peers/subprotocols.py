"""python-websockets (10.4) peer for the subprotocol tests (spec/subprotocol_spec.lua).

    /usr/bin/python3 spec/peers/subprotocols.py client URL OFFERS_JSON
        For each offer (a list of subprotocols), connects offering it, sends
        "which", and prints
          {"offer": [...], "chosen": <ws.subprotocol or null>, "server_says": <the reply>}
        or {"offer": [...], "error": "..."} when the handshake fails.

    /usr/bin/python3 spec/peers/subprotocols.py server PORT SUPPORTED_JSON
        A server supporting those subprotocols (websockets picks by its own
        order); every message is answered with the chosen one ("none" if
        none). Prints {"event": "listening", "port": P}.
"""
import asyncio
import json
import sys

import websockets

from peer_util import emit


async def client(url, offers):
    for offer in offers:
        try:
            async with websockets.connect(url, subprotocols=offer, open_timeout=10) as ws:
                await ws.send("which")
                emit(offer=offer, chosen=ws.subprotocol,
                     server_says=await asyncio.wait_for(ws.recv(), 10))
        except Exception as e:  # report, the spec judges
            emit(offer=offer, error=repr(e))


async def server(port, supported):
    async def handler(ws, path=None):
        async for _ in ws:
            await ws.send(ws.subprotocol or "none")

    async with websockets.serve(handler, "127.0.0.1", port, subprotocols=supported):
        emit(event="listening", port=port)
        await asyncio.Future()


mode, where, lists = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
asyncio.run(client(where, lists) if mode == "client" else server(int(where), lists))

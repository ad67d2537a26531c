"""python3-websockets 10.4 echo server on /ws:
  /usr/bin/python3 py_echo.py PORT [deflate | tls CERT KEY]

deflate: permessage-deflate with the library's defaults (on by default there).
tls: wss:// with the ssl module."""
import asyncio
import ssl
import sys

import websockets


async def echo(sock, path):
    if path != "/ws":
        return
    try:
        async for message in sock:  # str for text, bytes for binary: sent back alike
            await sock.send(message)
    except websockets.ConnectionClosed:
        pass


async def main(port):
    # 16 MiB messages, no keepalive pings during a bench
    async with websockets.serve(echo, "127.0.0.1", port, compression=compression,
                                max_size=16 << 20, ping_interval=None, ssl=tls):
        print(f"python websockets echo on {port}", file=sys.stderr)
        await asyncio.Future()


compression = "deflate" if sys.argv[2:3] == ["deflate"] else None
tls = None
if sys.argv[2:3] == ["tls"]:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[3], sys.argv[4])
asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8080))

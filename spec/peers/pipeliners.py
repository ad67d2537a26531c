"""N clients that upgrade, pipeline 20 binary messages of 60,000 bytes each
(asking for as many echoes), never read, hold on for HOLD seconds, then
vanish (RST): the server queues their echoes and frees it all at once.

  pipeliners.py PORT N [HOLD]   prints "upgraded K", then "reset N"
"""
import base64
import os
import socket
import struct
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
hold = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key)).encode())
    socks.append(s)
ok = 0
for s in socks:
    s.settimeout(10)
    d = b""
    while b"\r\n\r\n" not in d:
        c = s.recv(4096)
        if not c:
            break
        d += c
    ok += d.startswith(b"HTTP/1.1 101")
print("upgraded", ok, flush=True)
mask, p = os.urandom(4), os.urandom(60000)
frame = bytes([0x82, 0x80 | 126]) + struct.pack(">H", len(p)) + mask + p   # (masked as is: any bytes do)
for s in socks:
    s.sendall(frame * 20)
time.sleep(hold)
for s in socks:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
print("reset", len(socks), flush=True)

"""A raw WebSocket client that stops reading (small SO_RCVBUF) until a flag
file appears, then reads everything to EOF and prints one JSON line: the
frames it parsed, whether each binary payload was intact, and the close
frame (spec/conn_spec.lua). Usage: slow_reader.py PORT FLAGFILE"""
import json, os, socket, struct, sys, time

port, flag = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(10)
s.connect(("127.0.0.1", port))
s.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(1)          # byte by byte: leave the frames in the kernel
print("upgraded", flush=True)
deadline = time.time() + 60   # (spec/conn_spec.lua waits as long for the queue to fill)
while not os.path.exists(flag) and time.time() < deadline:
    time.sleep(0.01)
# the server gives the close frame a second behind megabytes in the kernel's
# buffers: take them fast (a bytes += per chunk is quadratic: seconds under load)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
chunks = []
while True:
    try:
        d = s.recv(1 << 20)
    except OSError as e:
        break
    if not d:
        break
    chunks.append(d)
buf = b"".join(chunks)
out = {"bytes": len(buf), "frames": 0, "intact": 0, "close": None, "rest": 0}
i = 0
while i + 2 <= len(buf):
    b0, b1 = buf[i], buf[i + 1]
    n, j = b1 & 127, i + 2
    if n == 126:
        if j + 2 > len(buf): break
        n, j = struct.unpack(">H", buf[j:j + 2])[0], j + 2
    elif n == 127:
        if j + 8 > len(buf): break
        n, j = struct.unpack(">Q", buf[j:j + 8])[0], j + 8
    if j + n > len(buf): break
    p = buf[j:j + n]
    out["frames"] += 1
    if b0 & 15 == 2 and len(p) > 0 and p == p[:1] * len(p):
        out["intact"] += 1
    if b0 & 15 == 8:
        out["close"] = [struct.unpack(">H", p[:2])[0], p[2:].decode()]
    i = j + n
out["rest"] = len(buf) - i
print(json.dumps(out), flush=True)

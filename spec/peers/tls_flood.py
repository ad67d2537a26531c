"""A wss:// client that sends one binary message of N bytes as N one-byte TLS
records (encrypted beforehand, written at full speed), while a second
connection echoes 32 bytes every 10 ms. Prints one JSON line:
{"rounds": probe echoes, "worst_ms": the slowest, "echoed": the big message
came back whole} (spec/tls_read_spec.lua). Usage: tls_flood.py PORT N"""
import json, socket, ssl, struct, sys, threading, time

port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
UPGRADE = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def frame(op, payload, length=None):
    size = len(payload) if length is None else length
    if size < 126:
        head = bytes([op, 0x80 | size])
    elif size < 65536:
        head = bytes([op, 0x80 | 126]) + struct.pack(">H", size)
    else:
        head = bytes([op, 0x80 | 127]) + struct.pack(">Q", size)
    return head + b"\0\0\0\0" + payload          # (a zero mask key: payload as is)


def upgraded(sock):
    sock.sendall(UPGRADE)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    assert buf.startswith(b"HTTP/1.1 101"), buf
    return buf[buf.index(b"\r\n\r\n") + 4:]


# the flooding connection: TLS over memory BIOs, so its records can be made first
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out)
flood = socket.create_connection(("127.0.0.1", port))
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flood.sendall(out.read())
        inc.write(flood.recv(65536))
flood.sendall(out.read())
tls.write(UPGRADE)
flood.sendall(out.read())
reply = b""
while b"\r\n\r\n" not in reply:
    try:
        reply += tls.read(65536)
    except ssl.SSLWantReadError:
        inc.write(flood.recv(65536))
reply = reply[reply.index(b"\r\n\r\n") + 4:]
tls.write(frame(0x82, b"", n))
for _ in range(n):
    tls.write(b"x")                              # one record per byte
blob = out.read()

probe = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
probe.settimeout(20)
assert upgraded(probe) == b""

done = threading.Event()
echoed = []


def run_flood():
    flood.sendall(blob)
    got, want = reply, 10 + n
    flood.settimeout(30)
    while len(got) < want:
        try:
            got += tls.read(1 << 20)
        except ssl.SSLWantReadError:
            data = flood.recv(1 << 20)
            if not data:
                break
            inc.write(data)
    echoed.append(len(got) == want and got[:2] == b"\x82\x7f" and got[10:] == b"x" * n)
    done.set()


thread = threading.Thread(target=run_flood)
thread.start()
rounds, worst, deadline = 0, 0.0, time.time() + 30
while not done.is_set() and time.time() < deadline:
    t = time.time()
    probe.sendall(frame(0x81, b"p" * 32))
    got = b""
    while len(got) < 34:
        got += probe.recv(4096)
    assert got == b"\x81\x20" + b"p" * 32, got
    worst = max(worst, time.time() - t)
    rounds += 1
    time.sleep(0.01)
thread.join(30)
print(json.dumps({"rounds": rounds, "worst_ms": round(worst * 1000, 1),
                  "echoed": bool(echoed and echoed[0])}), flush=True)

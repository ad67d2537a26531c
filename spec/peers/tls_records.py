"""A wss:// client that counts the TLS records the server sends: TLS runs
over memory BIOs, so every byte from the socket is parsed into records
before OpenSSL (Python's ssl) sees it. It sends BURSTS bursts of N masked
32-byte text messages, each burst in one write, checks that the N echoes
come back whole and in order, and prints one JSON line:
{"records": [application-data records received per burst], "echoed": total}
(spec/cork_spec.lua). Usage: tls_records.py PORT BURSTS N [MODE]
MODE "one" (default): each burst is one record; "each": one record per
message, the burst's records still in one write (spec/tls_read_spec.lua);
"big": each burst is one binary message of N bytes, its echo checked;
"late": as "big", with a 4 KiB receive buffer and the echo read only 0.5 s
later, so the server's records wait for a full socket."""
import json, os, socket, ssl, struct, sys, time

port, bursts, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "one"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out)
if mode == "late":
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # (before connect: the window)
    sock.connect(("127.0.0.1", port))
else:
    sock = socket.create_connection(("127.0.0.1", port))
sock.settimeout(10)
raw = bytearray()
records = 0          # application-data records (type 23) seen so far


def push():
    data = out.read()
    if data:
        sock.sendall(data)


def pull():
    """Read from the socket; hand whole records to TLS, counting them."""
    global records
    data = sock.recv(65536)
    if not data:
        raise EOFError("server closed")
    raw.extend(data)
    while len(raw) >= 5:
        size = struct.unpack(">H", raw[3:5])[0]
        if len(raw) < 5 + size:
            break
        if raw[0] == 23:
            records += 1
        inc.write(bytes(raw[:5 + size]))
        del raw[:5 + size]


def call(fn, *args):
    while True:
        try:
            r = fn(*args)
            push()
            return r
        except ssl.SSLWantReadError:
            push()
            pull()


call(tls.do_handshake)
call(tls.write, ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += call(tls.read, 65536)
assert buf.startswith(b"HTTP/1.1 101"), buf
buf = buf[buf.index(b"\r\n\r\n") + 4:]


def frame(payload, op=0x81):
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        return bytes([op, 0x80 | len(payload)]) + key + masked
    return bytes([op, 0x80 | 127]) + struct.pack(">Q", len(payload)) + key + masked


def big_burst(b):
    """One binary message of n bytes; its echo (64-bit length) checked."""
    global buf
    payload = bytes((b + i) % 251 for i in range(n))
    call(tls.write, frame(payload, 0x82))
    if mode == "late":
        time.sleep(0.5)
    while True:
        if len(buf) >= 10:
            assert buf[0] == 0x82 and buf[1] == 127, buf[:4]
            size = struct.unpack(">Q", buf[2:10])[0]
            assert size == n, size
            if len(buf) >= 10 + n:
                assert buf[10:10 + n] == payload
                buf = buf[10 + n:]
                return 1
        buf += call(tls.read, 1 << 20)


per_burst, echoed = [], 0
for b in range(bursts):
    before = records
    if mode in ("big", "late"):
        echoed += big_burst(b)
        per_burst.append(records - before)
        continue
    sent = [("b%03d-m%04d-" % (b, i)).encode().ljust(32, b".") for i in range(n)]
    if mode == "each":
        for p in sent:
            tls.write(frame(p))                        # one record each...
        push()                                         # ...all in one write
    else:
        call(tls.write, b"".join(frame(p) for p in sent))   # one record, one write
    got = 0
    while got < n:
        if len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 127):
            size = buf[1] & 127
            assert buf[0] == 0x81 and size < 126, buf[:4]
            assert buf[2:2 + size] == sent[got], (buf[2:2 + size], sent[got])
            buf = buf[2 + size:]
            got += 1
            continue
        buf += call(tls.read, 65536)
    echoed += got
    per_burst.append(records - before)
print(json.dumps({"records": per_burst, "echoed": echoed}), flush=True)
sock.close()

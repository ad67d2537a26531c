"""TLS peers that vanish at every awkward moment (spec/tls_vanish_spec.lua).

  tls_vanish.py client PORT CAFILE SEQUENCE COUNT
      runs SEQUENCE COUNT times against a wss:// echo server on 127.0.0.1:PORT
      (/ws), one connection after another; prints {"sequence", "count", "errors"}.
  tls_vanish.py server PORT CERT KEY
      a wss:// server that misbehaves as the request path asks (/SEQUENCE);
      prints "listening" once bound, serves until killed.

Standard library only. Every socket operation has a timeout; every loop is
bounded. A "reset" closes with SO_LINGER 0, so the kernel sends RST.
"""
import base64
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time

TIMEOUT = 3


def reset(sock):
    """Close with RST (SO_LINGER on, 0 s), whatever TLS state is on top."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def frame(opcode, payload, mask=True, fin=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    # whole-payload XOR through int arithmetic: fast enough for a few MiB
    k = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
    return head + key + body


def close_frame(code=1000, mask=True):
    return frame(0x8, struct.pack("!H", code), mask)


def request(port):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key)).encode()


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def notify_only(s):
    """Send close_notify without waiting for the peer's."""
    s.setblocking(False)
    try:
        s.unwrap()
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, OSError):
        pass


# ---- the client side: sequences against our wss server ------------------------

class Client:
    def __init__(self, port, ctx):
        self.port, self.ctx = port, ctx

    def tcp(self, small_window=False):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if small_window:
            # a small receive window: a server's large send blocks at once
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(TIMEOUT)
        s.connect(("127.0.0.1", self.port))
        return s

    def tls(self, small_window=False):
        return self.ctx.wrap_socket(self.tcp(small_window), server_hostname="127.0.0.1")

    def upgraded(self, small_window=False):
        s = self.tls(small_window)
        s.sendall(request(self.port))
        head = read_head(s)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError("no 101: %r" % head[:40])
        return s

    def client_hello(self):
        """The bytes of a real ClientHello, from an in-memory handshake."""
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return out.read()


def seq_close_at_once(c):
    # issue 11 exactly: close frame, then close the socket at once
    s = c.upgraded()
    s.sendall(close_frame())
    s.close()


def seq_reset_before_hello(c):
    reset(c.tcp())


def seq_reset_mid_hello(c):
    s = c.tcp()
    hello = c.client_hello()
    s.sendall(hello[:len(hello) // 2])
    reset(s)


def seq_reset_after_hello(c):
    # the server has answered with its flight and waits for ours
    s = c.tcp()
    s.sendall(c.client_hello())
    s.recv(1)
    reset(s)


def seq_reset_mid_upgrade(c):
    s = c.tls()
    r = request(c.port)
    s.sendall(r[:len(r) // 2])
    reset(s)


def seq_reset_after_upgrade(c):
    # the 101 is on its way; the client is gone before it is read
    s = c.tls()
    s.sendall(request(c.port))
    reset(s)


def seq_reset_mid_frame(c):
    s = c.upgraded()
    f = frame(0x2, os.urandom(1000))
    s.sendall(f[:500])
    reset(s)


LARGE = frame(0x2, b"x" * (256 * 1024))


def seq_reset_during_large_echo(c):
    # the server is writing a 256 KiB echo into a 4 KiB window nobody reads
    s = c.upgraded(small_window=True)
    s.sendall(LARGE)
    s.recv(1)
    reset(s)


def seq_close_during_large_echo(c):
    # as above, with an orderly TCP close and no close frame
    s = c.upgraded(small_window=True)
    s.sendall(LARGE)
    s.recv(1)
    s.close()


def seq_reset_after_server_close(c):
    # the server fails the connection (reserved opcode: 1002) and sends its
    # close frame; the client resets instead of answering
    s = c.upgraded()
    s.sendall(frame(0x3, b""))
    reset(s)


def seq_reset_after_close_frame(c):
    # our close frame is answered by the server; the client resets meanwhile
    s = c.upgraded()
    s.sendall(close_frame())
    reset(s)


def seq_close_notify_keep_tcp(c):
    # close_notify with the TCP connection left open: the server must close it
    s = c.upgraded()
    s.settimeout(TIMEOUT)
    raw = s.unwrap()   # sends close_notify, waits for the server's
    raw.settimeout(TIMEOUT)
    if raw.recv(1) != b"":
        raise RuntimeError("server kept the connection open after close_notify")
    raw.close()


def seq_close_notify_and_close(c):
    # close_notify, then TCP close at once
    s = c.upgraded()
    notify_only(s)
    s.close()


def seq_close_frame_notify_close(c):
    # close frame, close_notify and TCP close, all at once
    s = c.upgraded()
    s.sendall(close_frame())
    notify_only(s)
    s.close()


def seq_half_message_notify(c):
    # half a message, then close_notify and close
    s = c.upgraded()
    s.sendall(frame(0x1, b"hello", fin=False))
    notify_only(s)
    s.close()


def run_client(port, cafile, name, count):
    ctx = ssl.create_default_context(cafile=cafile)
    c = Client(port, ctx)
    fn = globals()["seq_" + name]
    errors = []
    for _ in range(count):
        try:
            fn(c)
        except (OSError, RuntimeError, ssl.SSLError) as e:
            errors.append(repr(e)[:120])
    print(json.dumps({"sequence": name, "count": count, "errors": len(errors), "first": errors[:3]}))


# ---- the server side: misbehaving wss server for our client -----------------

def accept_key(key):
    import hashlib
    return base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()


def upgrade(s):
    head = read_head(s).decode("latin-1")
    path = head.split(" ", 2)[1] if " " in head else "/"
    key = ""
    for line in head.split("\r\n"):
        if line.lower().startswith("sec-websocket-key:"):
            key = line.split(":", 1)[1].strip()
    resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\n\r\n" % accept_key(key)).encode()
    return path.lstrip("/"), resp


def serve_one(raw, ctx):
    raw.settimeout(TIMEOUT)
    try:
        s = ctx.wrap_socket(raw, server_side=True)
        mode, resp = upgrade(s)
        if mode == "reset_upgrade":
            reset(s)
        elif mode == "half_101":
            s.sendall(resp[:len(resp) // 2])
            reset(s)
        elif mode == "reset_mid_frame":
            s.sendall(resp + frame(0x2, os.urandom(1000), mask=False)[:300])
            time.sleep(0.01)   # (mostly) after the client has read the 101
            reset(s)
        elif mode == "close_at_once":
            s.sendall(resp + close_frame(mask=False))
            s.close()
        elif mode == "close_reset":
            s.sendall(resp + close_frame(mask=False))
            time.sleep(0.01)
            reset(s)
        elif mode == "reset_while_client_sends":
            s.sendall(resp)
            s.recv(1)
            reset(s)
        elif mode == "reset_during_close":
            # the client closes; we reset once its close frame arrives
            s.sendall(resp)
            s.recv(1)
            reset(s)
        elif mode == "close_notify_keep_tcp":
            s.sendall(resp)
            notify_only(s)
            raw.settimeout(TIMEOUT)
            try:
                raw.recv(1)   # until the client closes TCP (or the timeout)
            except OSError:
                pass
            raw.close()
        elif mode == "close_notify_close":
            s.sendall(resp)
            notify_only(s)
            s.close()
        elif mode == "frame_notify_close":
            s.sendall(resp + close_frame(mask=False))
            notify_only(s)
            s.close()
        else:
            s.sendall(resp)
            s.close()
    except (OSError, ssl.SSLError):
        try:
            raw.close()
        except OSError:
            pass


def run_server(port, cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)
    # a second port resets every connection during the TLS handshake
    rs = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    rs.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    rs.bind(("127.0.0.1", 0))
    rs.listen(128)
    print(json.dumps({"listening": port, "reset_port": rs.getsockname()[1]}), flush=True)

    def resetter():
        while True:
            c, _ = rs.accept()
            c.settimeout(TIMEOUT)
            try:
                c.recv(100)   # part of the ClientHello, then RST
            except OSError:
                pass
            reset(c)
    threading.Thread(target=resetter, daemon=True).start()
    while True:
        raw, _ = ls.accept()
        threading.Thread(target=serve_one, args=(raw, ctx), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1] == "client":
        run_client(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        run_server(int(sys.argv[2]), sys.argv[3], sys.argv[4])

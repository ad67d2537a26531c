"""A hostile HTTP proxy for spec/tunnel_hostile_spec.lua.

    python3 spec/peers/evil_proxy.py PORT

The CONNECT target's host name picks the misbehaviour ("CONNECT drip.test:1
HTTP/1.1"); any other host (an address) is tunnelled for real. For every
CONNECT it prints one JSON line: the request line and the decoded
Proxy-Authorization ("user:password", or null). Connections are served
each on a thread of its own.
"""
import base64
import json
import select
import socket
import sys
import threading
import time

OK = b"HTTP/1.1 200 Connection established\r\n\r\n"


def emit(**kw):
    print(json.dumps(kw), flush=True)


def rst(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()


def read_head(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d:
            return None
        buf += d
    return buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def pump(a, b):
    """Copy both ways until either side ends (at most 30 s)."""
    end = time.time() + 30
    while time.time() < end:
        r, _, _ = select.select([a, b], [], [], 1)
        for s in r:
            d = s.recv(65536)
            if not d:
                return
            (b if s is a else a).sendall(d)


def drip(c, data, gap):
    for i in range(len(data)):
        c.sendall(data[i:i + 1])
        time.sleep(gap)


def hold(c, secs=10):
    """Keep the connection open, reading, until the client leaves."""
    c.settimeout(secs)
    try:
        while c.recv(4096):
            pass
    except OSError:
        pass


def tunnel(c, port, answer=OK, gap=0):
    """Answer (gap > 0: one byte per gap seconds), then tunnel to the test
    server, always on 127.0.0.1 (whatever the target's host)."""
    up = socket.create_connection(("127.0.0.1", port), timeout=5)
    up.settimeout(None)
    if gap > 0:
        drip(c, answer, gap)
    else:
        c.sendall(answer)
    pump(c, up)
    up.close()


def serve(c):
    try:
        head = read_head(c)
        if head is None:
            return
        lines = head.split("\r\n")
        auth = None
        for ln in lines[1:]:
            name, _, value = ln.partition(":")
            if name.strip().lower() == "proxy-authorization":
                scheme, _, cred = value.strip().partition(" ")
                auth = base64.b64decode(cred).decode("utf-8", "replace") if scheme == "Basic" else value
        emit(line=lines[0], auth=auth)
        target = lines[0].split(" ")[1]
        name, _, port = target.rpartition(":")
        port = int(port)
        b = name.split(".")[0]
        if b == "extra":          # the 200 and bytes at once: not the server's
            c.sendall(OK + b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            hold(c)
        elif b == "nohead":       # a head that never ends
            c.sendall(b"HTTP/1.1 200 OK\r\nX-A: b\r\n")
            hold(c)
        elif b == "huge":         # a head past any max_header, then stalls
            c.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 200 + b"\r\n")
            for _ in range(2000):
                c.sendall(b"X-Pad: " + b"a" * 200 + b"\r\n")
            hold(c)
        elif b == "http10":
            tunnel(c, port, b"HTTP/1.0 200 Connection established\r\n\r\n")
        elif b == "noreason":
            tunnel(c, port, b"HTTP/1.1 200\r\n\r\n")
        elif b == "barelf":       # bare LF line ends (RFC 9112 section 2.2 lets a client take them)
            tunnel(c, port, b"HTTP/1.1 200 OK\nX-A: b\n\n")
        elif b == "status204":    # any 2xx opens a tunnel (RFC 9110 section 9.3.6)
            tunnel(c, port, b"HTTP/1.1 204 No Content\r\n\r\n")
        elif b == "h2":
            c.sendall(b"HTTP/2 200\r\n\r\n")
            hold(c)
        elif b == "cl200":        # a 2xx's Content-Length means nothing: its "body" is not the proxy's
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            hold(c)
        elif b == "interim":
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
            hold(c)
        elif b == "p407cl":
            body = b"<h1>auth, please</h1>"
            c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                      b"Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n" % len(body) + body)
            c.close()
        elif b == "p407chunked":
            c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n0\r\n\r\n")
            hold(c)
        elif b == "p302":
            c.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\nContent-Length: 4\r\n\r\nbody")
            hold(c)
        elif b == "close":        # accepts, then closes at once
            c.close()
        elif b == "rst":          # accepts the tunnel, then RSTs on the ClientHello
            c.sendall(OK)
            c.recv(1)
            rst(c)
        elif b == "drip":         # one byte per 50 ms, then it tunnels
            tunnel(c, port, OK, 0.05)
        else:
            tunnel(c, port)
    except OSError:
        pass
    finally:
        try:
            c.close()
        except OSError:
            pass


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1])))
    srv.listen(64)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


main()

"""Peers for the hub's burst test (spec/hub_spec.lua), each its own process.

  burst.py client WS_PORT N SIZE   reads N binary frames of str(i) + "b" * SIZE
                                   as fast as the socket gives them, then
                                   checks them: prints "connected", then "all",
                                   "closed CODE after I" or "bad I"
  burst.py publish REDIS_PORT N SIZE  PUBLISHes those N messages to ws:burst in
                                   one pipelined write, as a hub would (unordered
                                   header of a made-up node), prints "published"
"""
import socket
import struct
import sys


def body(i, size):
    return str(i).encode() + b"b" * size


def client(port, n, size):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    buf = bytearray(buf[buf.index(b"\r\n\r\n") + 4:])
    print("connected", flush=True)
    want = sum(4 + len(body(i, size)) for i in range(1, n + 1))
    while len(buf) < want:
        d = s.recv(1 << 20)
        if not d:
            break
        buf += d
    at = 0
    for i in range(1, n + 1):
        b = body(i, size)
        if buf[at:at + 2] == b"\x88" + bytes([buf[at + 1]]) and buf[at + 1] >= 2:
            # a close frame (a server drops a client that falls max_queue behind)
            print("closed", struct.unpack(">H", buf[at + 2:at + 4])[0], "after", i - 1, flush=True)
            return
        if buf[at:at + 4] != b"\x82\x7e" + struct.pack(">H", len(b)) or buf[at + 4:at + 4 + len(b)] != b:
            print("bad", i, bytes(buf[at:at + 8]), flush=True)
            return
        at += 4 + len(b)
    print("all", flush=True)


def publish(port, n, size):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    out = []
    for i in range(1, n + 1):
        m = b"u 00000000000000aa %d b\n" % i + body(i, size)
        out.append(b"*3\r\n$7\r\nPUBLISH\r\n$8\r\nws:burst\r\n$%d\r\n%s\r\n" % (len(m), m))
    s.sendall(b"".join(out))
    got = b""
    while got.count(b"\r\n") < n:
        got += s.recv(65536)
    print("published", flush=True)


if __name__ == "__main__":
    {"client": client, "publish": publish}[sys.argv[1]](*map(int, sys.argv[2:5]))

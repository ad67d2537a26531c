"""A raw WebSocket client whose input never runs dry: for SECS seconds it
writes small masked binary frames as fast as the server takes them, while a
thread reads everything the server sends (spec/loops_faults_spec.lua).
Usage: flooder.py PORT PATH SECS; prints "sent N got N"."""
import socket, sys, threading, time

port, path, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n" % path).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
stop = time.time() + secs
got = [len(buf) - buf.index(b"\r\n\r\n") - 4]

def reader():
    s.settimeout(0.5)
    while time.time() < stop + 1:
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError:
            break
        if not d:
            break
        got[0] += len(d)

t = threading.Thread(target=reader)
t.start()
chunk = (bytes([0x82, 0x80 | 100]) + b"\0\0\0\0" + b"x" * 100) * 1000   # (mask 0: the payload as is)
sent = 0
s.settimeout(5)
while time.time() < stop:
    s.sendall(chunk)
    sent += len(chunk)
t.join()
print("sent %d got %d" % (sent, got[0]), flush=True)

"""Hostile TLS clients against a wss:// echo server on 127.0.0.1:PORT (/ws)
(spec/tls_hostile_spec.lua). Each mode prints one JSON line.

  tls_hostile.py MODE PORT [N] [--pid PID]

--pid: the server's process, whose RSS is sampled meanwhile (rss_growth_kib).
Most modes run a probe meanwhile: a second wss:// client echoing 32 bytes
every 10 ms (rounds, worst_ms: its slowest echo).

Records of our own (renegotiation, alerts) use TLS 1.2 with
ECDHE-ECDSA-AES128-GCM-SHA256: Python's ssl does the handshake over memory
BIOs, the keys come from its key log (RFC 5246 section 6.3), the cryptography
package seals them. Every socket has a timeout; every loop is bounded."""
import hashlib
import hmac
import json
import os
import random
import select
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import warnings

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TIMEOUT = 5
warnings.simplefilter("ignore", DeprecationWarning)    # (TLS 1.0 and 1.1, offered on purpose)
UPGRADE = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def emit(**kw):
    print(json.dumps(kw), flush=True)


def u16(n):
    return struct.pack(">H", n)


def frame(op, payload, fin=True):
    """A client frame masked with a zero key (the payload as it is)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + u16(n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tcp(port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(TIMEOUT)
    s.connect(("127.0.0.1", port))
    return s


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def upgraded(port, rcvbuf=None):
    s = client_ctx().wrap_socket(tcp(port, rcvbuf))
    s.sendall(UPGRADE)
    head = read_head(s)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError("no 101: %r" % head[:60])
    return s


def client_hello(ctx=None):
    """The bytes of a real ClientHello, from an in-memory handshake."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = (ctx or client_ctx()).wrap_bio(inc, out)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def until_eof(s, secs):
    """Seconds until the peer closed (EOF or reset), or None after secs."""
    t0 = time.time()
    s.settimeout(0.2)
    while time.time() - t0 < secs:
        try:
            if s.recv(65536) == b"":
                return time.time() - t0
        except socket.timeout:
            pass
        except OSError:
            return time.time() - t0
    return None


class Probe(threading.Thread):
    """A second wss:// client: 32 bytes echoed every 10 ms; and the server's
    RSS (pid) sampled as it goes."""

    def __init__(self, port, pid=None):
        super().__init__(daemon=True)
        self.port, self.pid = port, pid
        self.done = threading.Event()
        self.rounds, self.worst, self.error = 0, 0.0, None
        self.rss0 = self.rss_max = rss_kib(pid)
        self.sock = upgraded(port)

    def run(self):
        s = self.sock
        try:
            deadline = time.time() + 60
            while not self.done.is_set() and time.time() < deadline:
                t = time.time()
                s.sendall(frame(0x1, b"p" * 32))
                got = b""
                while len(got) < 34:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise RuntimeError("probe: server closed")
                    got += chunk
                if got != b"\x81\x20" + b"p" * 32:
                    raise RuntimeError("probe: echo %r" % got[:40])
                self.worst = max(self.worst, time.time() - t)
                self.rounds += 1
                if self.pid:
                    self.rss_max = max(self.rss_max, rss_kib(self.pid) or 0)
                time.sleep(0.01)
        except Exception as e:   # reported, not raised: the mode's result still prints
            self.error = repr(e)
        s.close()

    def report(self):
        self.done.set()
        self.join(TIMEOUT * 2)
        r = {"rounds": self.rounds, "worst_ms": round(self.worst * 1000, 1), "probe_error": self.error}
        if self.pid:
            r["rss_growth_kib"] = self.rss_max - self.rss0
        return r


def rss_kib(pid):
    if not pid:
        return None
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# ---- TLS 1.2 records of our own -----------------------------------------------

def prf(secret, label, seed, n):
    """TLS 1.2's PRF with SHA-256 (RFC 5246 section 5)."""
    seed = label + seed
    out, a = b"", seed
    while len(out) < n:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:n]


class Tls12:
    """A TLS 1.2 session whose records after the handshake are made here."""

    def __init__(self, port, rcvbuf=None):
        self.sock = tcp(port, rcvbuf)
        fd, log = tempfile.mkstemp()
        os.close(fd)
        try:
            ctx = client_ctx()
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
            ctx.keylog_filename = log
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = ctx.wrap_bio(inc, out)
            got = b""
            for _ in range(50):
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self.sock.sendall(out.read())
                    data = self.sock.recv(65536)
                    if not data:
                        raise RuntimeError("closed during the handshake")
                    got += data
                    inc.write(data)
            self.sock.sendall(out.read())
            with open(log) as f:
                line = [x for x in f.read().split("\n") if x.startswith("CLIENT_RANDOM ")][-1]
        finally:
            os.remove(log)
        _, cr, ms = line.split()
        # the ServerHello opens the server's first record: its random at 11
        assert got[0] == 0x16 and got[5] == 2, got[:8]
        kb = prf(bytes.fromhex(ms), b"key expansion", got[11:43] + bytes.fromhex(cr), 40)
        self.cenc, self.senc = AESGCM(kb[0:16]), AESGCM(kb[16:32])
        self.civ, self.siv = kb[32:36], kb[36:40]
        self.cseq = self.sseq = 1     # (0: the Finished messages)
        self.buf = b""

    def record(self, ctype, payload):
        seq = self.cseq.to_bytes(8, "big")
        self.cseq += 1
        aad = seq + bytes([ctype]) + b"\x03\x03" + u16(len(payload))
        body = seq + self.cenc.encrypt(self.civ + seq, payload, aad)
        return bytes([ctype]) + b"\x03\x03" + u16(len(body)) + body

    def read_record(self):
        """(type, plaintext), or None once the server closed."""
        for _ in range(10000):
            if len(self.buf) >= 5:
                n = struct.unpack(">H", self.buf[3:5])[0]
                if len(self.buf) >= 5 + n:
                    rec, self.buf = self.buf[:5 + n], self.buf[5 + n:]
                    seq = self.sseq.to_bytes(8, "big")
                    self.sseq += 1
                    aad = seq + rec[:1] + b"\x03\x03" + u16(n - 24)
                    return rec[0], self.senc.decrypt(self.siv + rec[5:13], rec[13:], aad)
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        raise RuntimeError("read_record: no end")

    def upgrade(self):
        self.sock.sendall(self.record(23, UPGRADE))
        got = b""
        while b"\r\n\r\n" not in got:
            r = self.read_record()
            if r is None:
                raise RuntimeError("closed before the 101")
            got += r[1]
        if not got.startswith(b"HTTP/1.1 101"):
            raise RuntimeError("no 101: %r" % got[:60])

    def read_app(self, n):
        """n bytes of application data, and the alerts met on the way."""
        got, alerts = b"", []
        while len(got) < n:
            r = self.read_record()
            if r is None:
                break
            if r[0] == 21:
                alerts.append(list(r[1]))
            elif r[0] == 23:
                got += r[1]
        return got, alerts


# a renegotiation: a ClientHello under the session's keys (the server reads
# its type and refuses; the rest is never parsed)
RENEGOTIATE = b"\x01\x00\x00\x28" + b"\x03\x03" + b"\x00" * 38
RENEGOTIATE_SHORT = b"\x01\x00\x00\x00"     # (the least a flood needs)


# ---- modes --------------------------------------------------------------------

def mode_stall(port, n, pid):
    """n handshakes that stall (half a ClientHello, or a whole one and no
    answer to the server's flight) and one that sends its ClientHello one
    byte every 50 ms: seconds until the server cut each."""
    probe = Probe(port, pid)
    probe.start()
    hello = client_hello()
    socks, t0 = [], time.time()
    for i in range(n):
        s = tcp(port)
        s.sendall(hello if i % 2 else hello[:len(hello) // 2])
        socks.append(s)
    trickle = tcp(port)
    t1, sent = time.time(), 0
    cut = [None] * n
    trickle_cut = None
    deadline = time.time() + 10
    while time.time() < deadline and (trickle_cut is None or None in cut):
        if trickle_cut is None and sent < len(hello):
            try:
                trickle.send(hello[sent:sent + 1])
                sent += 1
            except OSError:
                trickle_cut = time.time() - t1
        live = [s for i, s in enumerate(socks) if cut[i] is None]
        if trickle_cut is None:
            live.append(trickle)
        r, _, _ = select.select(live, [], [], 0.05)
        for s in r:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if data:
                continue          # the server's flight: read, never answered
            if s is trickle:
                trickle_cut = time.time() - t1
            else:
                cut[socks.index(s)] = time.time() - t0
    for s in socks + [trickle]:
        s.close()
    done = [c for c in cut if c is not None]
    emit(cut=len(done), first=round(min(done), 2) if done else None, last=round(max(done), 2) if done else None,
         trickle_cut=trickle_cut and round(trickle_cut, 2), trickle_sent=sent, hello=len(hello), **probe.report())


def mode_garbage(port, pid):
    """Bytes that are not TLS (nor HTTP) to the TLS port: what came back,
    and how soon the server closed."""
    probe = Probe(port, pid)
    probe.start()
    cases = {
        # (seeded: some random starts read as a record header whose body is
        # still to come, and are cut at handshake_timeout instead)
        "random": random.Random(6455).randbytes(4096),
        "zeros": b"\0" * 64,
        "bad_length": b"\x16\x03\x01\xff\xff" + os.urandom(64),
        "not_hello": b"\x16\x03\x03\x00\x05hello",
        "sslv2": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + os.urandom(37),
        "alert_first": b"\x15\x03\x03\x00\x02\x02\x28",
        "app_data_first": b"\x17\x03\x03\x00\x10" + os.urandom(16),
        "ssh": b"SSH-2.0-OpenSSH_9.6\r\n",
    }
    res = {}
    for name, data in cases.items():
        s = tcp(port)
        s.sendall(data)
        t0, got = time.time(), b""
        s.settimeout(0.2)
        closed = None
        while time.time() - t0 < 4 and closed is None:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    closed = time.time() - t0
                got += chunk
            except socket.timeout:
                pass
            except OSError:
                closed = time.time() - t0
        s.close()
        res[name] = {"closed": closed and round(closed, 2), "answer": got[:7].hex()}
    emit(cases=res, **probe.report())


def mode_versions(port, pid):
    """Handshakes offering only TLS 1.0 or 1.1, or TLS 1.2 with only weak
    ciphers: the error each met (or "accepted")."""
    probe = Probe(port, pid)
    probe.start()
    res = {}
    for name, lo, hi, ciphers in [
        ("tls1_0", ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1, "DEFAULT:@SECLEVEL=0"),
        ("tls1_1", ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0"),
        ("null", ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, "eNULL:@SECLEVEL=0"),
        ("anonymous", ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, "aNULL:@SECLEVEL=0"),
    ]:
        try:
            ctx = client_ctx()
            ctx.minimum_version, ctx.maximum_version = lo, hi
            ctx.set_ciphers(ciphers)
        except (ssl.SSLError, ValueError) as e:
            res[name] = "unavailable: " + str(e)
            continue
        s = tcp(port)
        try:
            t = ctx.wrap_socket(s)
            res[name] = "accepted: %s %s" % (t.version(), t.cipher()[0])
            t.close()
        except (ssl.SSLError, OSError) as e:
            res[name] = str(e)
        s.close()
    emit(results=res, **probe.report())


def mode_renegotiate(port, pid):
    """TLS 1.2: a renegotiation in the middle of a message, then the rest of
    the message: the alerts and the echo that came back."""
    probe = Probe(port, pid)
    probe.start()
    t = Tls12(port)
    t.upgrade()
    msg = frame(0x1, b"hello")
    t.sock.sendall(t.record(23, msg[:8]))
    t.sock.sendall(t.record(22, RENEGOTIATE))
    t.sock.sendall(t.record(23, msg[8:]))
    echo, alerts = t.read_app(7)
    t.sock.sendall(t.record(23, frame(0x8, u16(1000))))
    close, more = t.read_app(4)
    t.sock.close()
    emit(echo=echo.hex(), alerts=alerts + more, close=close.hex(), **probe.report())


def mode_renegotiate_flood(port, n, pid):
    """TLS 1.2: n renegotiations in one burst from a client that never reads
    (a 4 KiB receive window): how much the server took (sent_kib, in up to
    5 s of trying), whether it dropped us, and the probe's echoes and the
    server's RSS meanwhile."""
    t = Tls12(port, rcvbuf=4096)
    t.upgrade()
    blob = b"".join(t.record(22, RENEGOTIATE_SHORT) for _ in range(n))
    probe = Probe(port, pid)
    probe.start()
    time.sleep(0.1)
    s, sent, dropped = t.sock, 0, False
    s.settimeout(0.5)
    deadline = time.time() + 5
    while sent < len(blob) and time.time() < deadline:
        try:
            sent += s.send(blob[sent:sent + 65536])
        except socket.timeout:
            pass
        except OSError:
            dropped = True
            break
    time.sleep(0.3)
    rep = probe.report()
    if not dropped:
        dropped = until_eof(s, 3) is not None
    s.close()
    emit(sent_kib=sent // 1024, total_kib=len(blob) // 1024, dropped=dropped, **rep)


class KeyUpdater:
    """A TLS 1.3 session on libssl through ctypes (Python's ssl has no key
    update) over memory BIOs, so that its records can be made first."""

    def __init__(self, port):
        import ctypes
        lib, crypto = ctypes.CDLL("libssl.so.3"), ctypes.CDLL("libcrypto.so.3")
        vp, i, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        for f, res, args in [(lib.TLS_client_method, vp, []), (lib.SSL_CTX_new, vp, [vp]), (lib.SSL_new, vp, [vp]),
                             (crypto.BIO_s_mem, vp, []), (crypto.BIO_new, vp, [vp]),
                             (lib.SSL_set_bio, None, [vp, vp, vp]), (lib.SSL_set_connect_state, None, [vp]),
                             (lib.SSL_do_handshake, i, [vp]), (lib.SSL_key_update, i, [vp, i]),
                             (crypto.BIO_read, i, [vp, cp, i]), (crypto.BIO_write, i, [vp, cp, i]),
                             (lib.SSL_write, i, [vp, cp, i]), (lib.SSL_read, i, [vp, cp, i])]:
            f.restype, f.argtypes = res, args
        self.lib, self.crypto = lib, crypto
        self.ssl = lib.SSL_new(lib.SSL_CTX_new(lib.TLS_client_method()))
        self.rb, self.wb = crypto.BIO_new(crypto.BIO_s_mem()), crypto.BIO_new(crypto.BIO_s_mem())
        lib.SSL_set_bio(self.ssl, self.rb, self.wb)
        lib.SSL_set_connect_state(self.ssl)
        self.buf = ctypes.create_string_buffer(1 << 16)
        self.sock = tcp(port)
        for _ in range(50):
            rc = lib.SSL_do_handshake(self.ssl)
            self.sock.sendall(self.out())
            if rc == 1:
                break
            self.more()

    def out(self):
        """The records made so far."""
        got = b""
        for _ in range(1000):
            k = self.crypto.BIO_read(self.wb, self.buf, len(self.buf))
            if k <= 0:
                break
            got += self.buf.raw[:k]
        return got

    def more(self):
        data = self.sock.recv(65536)
        if not data:
            raise RuntimeError("closed")
        self.crypto.BIO_write(self.rb, data, len(data))

    def write(self, data):
        self.lib.SSL_write(self.ssl, data, len(data))
        return self.out()

    def read_until(self, end):
        got = b""
        for _ in range(100):
            if end in got:
                break
            k = self.lib.SSL_read(self.ssl, self.buf, len(self.buf))
            if k > 0:
                got += self.buf.raw[:k]
            else:
                self.more()
        return got

    def key_updates(self, n):
        """n KeyUpdate records (no update requested of the server)."""
        parts = []
        for _ in range(n):
            self.lib.SSL_key_update(self.ssl, 0)        # SSL_KEY_UPDATE_NOT_REQUESTED
            self.lib.SSL_do_handshake(self.ssl)
            parts.append(self.out())
        return b"".join(parts)


def mode_keyupdate_flood(port, n, pid):
    """TLS 1.3: n KeyUpdates in one burst after the upgrade: how much the
    server took, the probe's echoes meanwhile, and an echo after them."""
    k = KeyUpdater(port)
    k.sock.sendall(k.write(UPGRADE))
    head = k.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:60]
    blob = k.key_updates(n)
    probe = Probe(port, pid)
    probe.start()
    time.sleep(0.1)
    sock = k.sock
    sock.settimeout(0.5)
    sent, deadline = 0, time.time() + 10
    while sent < len(blob) and time.time() < deadline:
        try:
            sent += sock.send(blob[sent:sent + 65536])
        except socket.timeout:
            pass
    # then a message under the last keys: the session survived it all
    sock.settimeout(TIMEOUT)
    sock.sendall(k.write(frame(0x1, b"after")))
    time.sleep(0.3)
    rep = probe.report()
    got = k.read_until(b"after")
    sock.close()
    emit(sent_kib=sent // 1024, total_kib=len(blob) // 1024, echo=got.endswith(b"\x81\x05after"), **rep)


def mode_keyupdate_first(port, n, pid):
    """TLS 1.3: n KeyUpdates before the upgrade request, in one write with
    it: the answer and an echo."""
    k = KeyUpdater(port)
    k.sock.sendall(k.key_updates(n) + k.write(UPGRADE + frame(0x1, b"first")))
    got = k.read_until(b"first")
    k.sock.close()
    emit(upgraded=got.startswith(b"HTTP/1.1 101"), echo=got.endswith(b"\x81\x05first"))


def mode_alerts(port, pid):
    """TLS 1.2 alerts in the middle of a message: a warning (user_canceled),
    after which the message goes on; a fatal one (handshake_failure), after
    which the server must close at once; six warnings in a row."""
    probe = Probe(port, pid)
    probe.start()
    res = {}
    msg = frame(0x1, b"hello")
    t = Tls12(port)
    t.upgrade()
    t.sock.sendall(t.record(23, msg[:8]) + t.record(21, b"\x01\x5a") + t.record(23, msg[8:]))
    echo, alerts = t.read_app(7)
    res["warning_echo"], res["warning_alerts"] = echo.hex(), alerts
    t.sock.close()
    for name, alert, count in [("fatal", b"\x02\x28", 1), ("warnings", b"\x01\x5a", 6)]:
        t = Tls12(port)
        t.upgrade()
        t.sock.sendall(t.record(23, msg[:8]) + b"".join(t.record(21, alert) for _ in range(count)))
        res[name + "_closed"] = until_eof(t.sock, 4)
        t.sock.close()
    emit(**res, **probe.report())


def mode_truncate(port, pid):
    """TCP closed without close_notify in the middle of a frame, and between
    two fragments of a message: seconds until the server closed, and our
    local ports (the server logs each connection's close code)."""
    probe = Probe(port, pid)
    probe.start()
    res = {}
    for name, data in [("mid_frame", frame(0x2, b"x" * 1000)[:500]),
                       ("mid_message", frame(0x1, b"first part", fin=False))]:
        s = upgraded(port)
        s.sendall(data)
        time.sleep(0.05)
        res[name + "_port"] = s.getsockname()[1]
        raw = socket.socket(fileno=os.dup(s.fileno()))
        s.close()                        # (no close_notify: the TLS object is dropped unsent)
        raw.shutdown(socket.SHUT_WR)
        res[name + "_closed"] = until_eof(raw, 4)
        raw.close()
    emit(**res, **probe.report())


def mode_huge_record(port, pid):
    """After the upgrade, a record header declaring more than TLS allows
    (16 KiB + 256, and 64 KiB), then a stall: seconds until the server
    closed (it needs no more than the header to know)."""
    probe = Probe(port, pid)
    probe.start()
    res = {}
    for name, n in [("over", 16384 + 256 + 1), ("max16", 65535)]:
        s = upgraded(port)
        raw = socket.socket(fileno=os.dup(s.fileno()))
        raw.sendall(b"\x17\x03\x03" + u16(n) + os.urandom(100))
        res[name] = until_eof(raw, 4)
        raw.close()
        s.close()
    emit(**res, **probe.report())


def mode_no_read(port, pid):
    """256 KiB messages sent for up to 12 s by a client that never reads
    (4 KiB window): seconds until the server dropped it."""
    probe = Probe(port, pid)
    probe.start()
    s = upgraded(port, rcvbuf=4096)
    msg = frame(0x2, b"m" * (256 * 1024))
    t0, dropped, sent = time.time(), None, 0
    s.settimeout(0.5)
    while time.time() - t0 < 12 and dropped is None:
        try:
            s.sendall(msg)
            sent += 1
        except socket.timeout:
            pass
        except (OSError, ssl.SSLError):
            dropped = time.time() - t0
    if dropped is None:
        c = until_eof(s, 2)
        dropped = c and time.time() - t0
    s.close()
    emit(dropped=dropped and round(dropped, 2), messages=sent, **probe.report())


def hello_with_sni(ext):
    """A TLS 1.2 ClientHello of our own with ext as its server_name
    extension's body (None: no such extension)."""
    suites = b"".join(u16(c) for c in (0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9))
    exts = b""
    if ext is not None:
        exts += u16(0) + u16(len(ext)) + ext
    exts += u16(10) + u16(6) + u16(4) + u16(29) + u16(23)                       # groups
    exts += u16(11) + u16(2) + b"\x01\x00"                                       # point formats
    exts += u16(13) + u16(8) + u16(6) + u16(0x0403) + u16(0x0804) + u16(0x0401)  # signatures
    body = b"\x03\x03" + os.urandom(32) + b"\x00" + u16(len(suites)) + suites + b"\x01\x00" + u16(len(exts)) + exts
    hs = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + u16(len(hs)) + hs


def sni(*names):
    entries = b"".join(b"\x00" + u16(len(x)) + x for x in names)
    return u16(len(entries)) + entries


def mode_sni(port, pid):
    """ClientHellos with odd server names: the first bytes of the answer
    (16: a ServerHello, 15: an alert), then a whole session with an odd but
    valid name."""
    probe = Probe(port, pid)
    probe.start()
    cases = {
        "none": None,
        "long": sni(b"a" * 255),
        "too_long": sni(b"b" * 1000),
        "empty": sni(b""),
        "nul": sni(b"evil.example\0localhost"),
        "binary": sni(b"\xff\xfe\x00\x01"),
        "trailing_dot": sni(b"localhost."),
        "ip": sni(b"127.0.0.1"),
        "two": sni(b"localhost", b"other.example"),
        "bad_list_length": u16(200) + b"\x00" + u16(9) + b"localhost",
        "empty_list": u16(0),
    }
    res = {}
    for name, ext in cases.items():
        s = tcp(port)
        s.sendall(hello_with_sni(ext))
        s.settimeout(2)
        try:
            got = s.recv(7)
        except OSError as e:
            got = repr(e).encode()
        res[name] = got[:1].hex() if got else "eof"
        s.close()
    # a whole session with a long odd name: the echo
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname=("x" * 63 + ".") * 3 + "odd")
    s = tcp(port)
    for _ in range(50):
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            s.sendall(out.read())
            inc.write(s.recv(65536))
    obj.write(UPGRADE + frame(0x1, b"odd name"))
    s.sendall(out.read())
    got = b""
    for _ in range(50):
        if got.endswith(b"odd name"):
            break
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            data = s.recv(65536)
            if not data:
                break
            inc.write(data)
    s.close()
    emit(answers=res, odd_name_echo=got.endswith(b"\x81\x08odd name"), **probe.report())


def main():
    args = sys.argv[1:]
    pid = None
    if "--pid" in args:
        i = args.index("--pid")
        pid = int(args[i + 1])
        del args[i:i + 2]
    mode, port = args[0], int(args[1])
    n = int(args[2]) if len(args) > 2 else None
    fn = globals()["mode_" + mode]
    if n is None:
        fn(port, pid)
    else:
        fn(port, n, pid)


if __name__ == "__main__":
    main()

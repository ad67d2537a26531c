"""Inflate permessage-deflate payloads with a raw zlib inflater of exactly
the given window (RFC 7692 section 7.2.2), independent of ws.core.

  python3 spec/peers/raw_inflate.py BITS TAKEOVER IN OUT

IN: records of a flag byte (1: compressed, RSV1; 0: sent as it is), a
4-byte big-endian length and the payload. TAKEOVER 1: one inflater for all
messages (context takeover); 0: a fresh one per message. OUT: each message
as a 4-byte big-endian length and its bytes. Exits 1 with "error N: why"
on the first message that does not inflate.
"""
import struct
import sys
import zlib

TAIL = b"\x00\x00\xff\xff"


def main():
    bits, takeover, src, dst = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], sys.argv[4]
    data = open(src, "rb").read()
    out = []
    d = zlib.decompressobj(-bits)
    i, n = 0, 0
    while i < len(data):
        flag = data[i]
        (length,) = struct.unpack(">I", data[i + 1:i + 5])
        payload = data[i + 5:i + 5 + length]
        i += 5 + length
        n += 1
        if flag:
            if not takeover:
                d = zlib.decompressobj(-bits)
            try:
                msg = d.decompress(payload + TAIL)
            except zlib.error as e:
                print("error %d: %s" % (n, e))
                sys.exit(1)
        else:
            msg = payload
        out.append(struct.pack(">I", len(msg)) + msg)
    open(dst, "wb").write(b"".join(out))
    print("ok %d" % n)


main()

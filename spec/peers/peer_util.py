"""What the Python test peers share: JSON lines out, SHA-256, random UTF-8."""
import hashlib
import json

# 1-, 2-, 3- and 4-byte UTF-8 characters
POOL = "az09 ~" + "éßжλ" + "€中文ㅎ" + "😀🎉𝄞"


def emit(**kw):
    print(json.dumps(kw), flush=True)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def utf8_text(n, rng):
    """Random valid UTF-8 (with multi-byte characters) of exactly n bytes."""
    s = "".join(rng.choices(POOL, k=n // 2 + 1)).encode()
    s = s[:n].decode("utf-8", errors="ignore").encode()   # drop a cut trailing char
    return (s + b"a" * (n - len(s))).decode()

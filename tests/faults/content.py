"""content.py - the bytes of every version the fault suite writes, and how
to tell a whole version from anything else.

A version is named by its id (vid, unique in a run) and has a size; its
bytes are a header line naming both, then bytes drawn from a generator
seeded with the vid.  So any file found on a node, or read through the
library, can be recognised from its own first line and regenerated to
compare: whole (exactly some version's bytes), a prefix of one (a write cut
short), or neither (torn or mixed).  The harness and the writers import
this file, so both always agree on the bytes.
"""
import hashlib
import random

MAGIC = b"CSF1 "


def make(vid, size):
    """The bytes of version vid: exactly size bytes (size >= header)."""
    head = b"%s%s %d\n" % (MAGIC, vid.encode(), size)
    if size < len(head):
        raise ValueError("version %s: %d bytes cannot hold its header" % (vid, size))
    return head + random.Random(vid).randbytes(size - len(head))


def sha(data):
    return hashlib.sha256(data).hexdigest()


def header(data):
    """(vid, size) from data's first line, or None when it has none."""
    if not data.startswith(MAGIC):
        return None
    nl = data.find(b"\n", 0, 200)
    if nl < 0:
        return None
    parts = data[len(MAGIC):nl].split(b" ")
    if len(parts) != 2 or not parts[1].isdigit():
        return None
    return parts[0].decode("ascii", "replace"), int(parts[1])


WHOLE, PREFIX, TORN = "whole", "prefix", "torn"


def classify(data, shas=None):
    """(kind, vid): WHOLE when data is exactly version vid's bytes, PREFIX
    when it is a strict prefix of them (vid None when too short to name
    one), else TORN (vid when the header named one).  shas caches each
    version's SHA-256 by vid."""
    h = header(data)
    if h is None:
        short = data[:len(MAGIC)]
        if b"\n" not in data[:200] and MAGIC.startswith(short) and len(data) < 200:
            return PREFIX, None       # cut before its header was whole
        return TORN, None
    vid, size = h
    if len(data) == size:
        want = shas.get(vid) if shas is not None else None
        if want is None:
            try:
                want = sha(make(vid, size))
            except ValueError:
                return TORN, vid
            if shas is not None:
                shas[vid] = want
        return (WHOLE if sha(data) == want else TORN), vid
    if len(data) < size:
        try:
            full = make(vid, size)
        except ValueError:
            return TORN, vid
        return (PREFIX if full.startswith(data) else TORN), vid
    return TORN, vid

"""Just enough of the protobuf wire format to read TenSEAL's serialised contexts and vectors.

TenSEAL serialises contexts (``TenSEALContextProto``) and vectors (``CKKSVectorProto``)
as protobuf messages wrapping SEAL objects. privfl reads the public key out of a
context (for the key fingerprint), the secret key (for seeded encryption), checks a
vector's framing before handing it to TenSEAL, and frames seeded SEAL ciphertexts
as vectors. Field numbers are those of TenSEAL 0.3's ``tensors.proto`` and
``tensealcontext.proto``. Malformed input raises ``ValueError``; callers wrap it.
"""

from __future__ import annotations

import struct

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

SEAL_MAGIC = 0xA15E
SEAL_HEADER = struct.Struct("<HBBBBHQ")
"""SEAL serialisation header: magic, header size, major, minor, compression mode, reserved, total size."""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def parse(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """The ``(field, wire type, value)`` triples of one message, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        value: int | bytes
        if wire == VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == LENGTH:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("length-delimited field runs past the end")
            value, pos = data[pos : pos + length], pos + length
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > len(data):
                raise ValueError("fixed-width field runs past the end")
            value, pos = data[pos : pos + width], pos + width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, wire, value))
    return out


def field_bytes(data: bytes, field: int) -> bytes | None:
    """The last length-delimited value of ``field`` (protobuf's last-one-wins rule), or None."""
    found = None
    for number, wire, value in parse(data):
        if number == field and wire == LENGTH:
            found = value
    return found  # type: ignore[return-value]


def replace_field(data: bytes, field: int, payload: bytes) -> bytes:
    """``data`` with every length-delimited ``field`` replaced by one holding ``payload`` (other fields kept)."""
    out = bytearray()
    for number, wire, value in parse(data):
        if number == field and wire == LENGTH:
            continue
        key = _varint(number << 3 | wire)
        if wire == VARINT:
            out += key + _varint(value)  # type: ignore[arg-type]
        elif wire == LENGTH:
            out += _length_field(number, value)  # type: ignore[arg-type]
        else:
            out += key + value  # type: ignore[operator]
    return bytes(out + _length_field(field, payload))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | LENGTH) + _varint(len(payload)) + payload


def ckks_vector_proto(size: int, ciphertext: bytes, scale: float) -> bytes:
    """A ``CKKSVectorProto`` holding one SEAL ciphertext of ``size`` values at ``scale``."""
    return (
        _length_field(1, _varint(size))
        + _length_field(2, ciphertext)
        + _varint(3 << 3 | FIXED64)
        + struct.pack("<d", scale)
    )


def read_ckks_vector_proto(data: bytes) -> tuple[list[int], list[bytes], float]:
    """``(sizes, ciphertexts, scale)`` of a ``CKKSVectorProto``."""
    sizes: list[int] = []
    cts: list[bytes] = []
    scale = 0.0
    for number, wire, value in parse(data):
        if number == 1 and wire == LENGTH:
            pos = 0
            while pos < len(value):  # type: ignore[arg-type]
                size, pos = _read_varint(value, pos)  # type: ignore[arg-type]
                sizes.append(size)
        elif number == 1 and wire == VARINT:
            sizes.append(value)  # type: ignore[arg-type]
        elif number == 2 and wire == LENGTH:
            cts.append(value)  # type: ignore[arg-type]
        elif number == 3 and wire == FIXED64:
            scale = struct.unpack("<d", value)[0]  # type: ignore[arg-type]
        else:
            raise ValueError(f"unexpected field {number} (wire type {wire}) in a CKKS vector")
    return sizes, cts, scale


def check_seal_header(blob: bytes) -> int:
    """Validate a SEAL object's header against ``blob``; return its compression mode."""
    if len(blob) < SEAL_HEADER.size:
        raise ValueError("SEAL object shorter than its header")
    magic, header_size, _major, _minor, compression, _reserved, total = SEAL_HEADER.unpack_from(blob)
    if magic != SEAL_MAGIC or header_size != SEAL_HEADER.size:
        raise ValueError("not a SEAL object (bad magic or header size)")
    if compression not in (0, 1, 2):
        raise ValueError(f"unknown SEAL compression mode {compression}")
    if total != len(blob):
        raise ValueError(f"SEAL header declares {total} bytes, got {len(blob)}")
    return compression

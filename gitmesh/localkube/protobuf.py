"""Decoding the Kubernetes protobuf encoding, for the kinds kubectl's typed generators send.

`kubectl create namespace|configmap|secret|serviceaccount` posts
`application/vnd.kubernetes.protobuf` and does not fall back to JSON. A request body is
the 4-byte magic `k8s\\0`, then a `runtime.Unknown` whose `raw` field is the object. Field
numbers are those of k8s.io/api's generated.proto. Other kinds stay 415.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"

# A schema maps a field number to (json name, kind): "string", "bytes", "bool", "int",
# "strings" (repeated), "map" (map<string,string>), "bytesmap" (map<string,bytes>), or a
# nested schema; "repeated:<schema name>" for repeated messages.
OBJECT_META = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    14: ("finalizers", "strings"),
}
REFERENCE = {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string")}
LOCAL_REFERENCE = {1: ("name", "string")}
SCHEMAS: dict[str, dict[int, tuple[str, Any]]] = {
    "Namespace": {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", "strings")})},
    "ConfigMap": {
        1: ("metadata", OBJECT_META),
        2: ("data", "map"),
        3: ("binaryData", "bytesmap"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", OBJECT_META),
        2: ("data", "bytesmap"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    "ServiceAccount": {
        1: ("metadata", OBJECT_META),
        2: ("secrets", ("repeated", REFERENCE)),
        3: ("imagePullSecrets", ("repeated", LOCAL_REFERENCE)),
        4: ("automountServiceAccountToken", "bool"),
    },
}


class ProtobufError(ValueError):
    """The body is not protobuf gitmesh can decode."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
    return out


def _message(data: bytes, schema: dict[int, tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, dict) and isinstance(value, bytes):
            out[name] = _message(value, kind)
        elif isinstance(kind, tuple) and isinstance(value, bytes):
            out.setdefault(name, []).append(_message(value, kind[1]))
        elif kind in ("map", "bytesmap") and isinstance(value, bytes):
            entry = dict(_fields(value))
            key = bytes(entry.get(1, b"")).decode()
            raw = entry.get(2, b"")
            raw = raw if isinstance(raw, bytes) else b""
            out.setdefault(name, {})[key] = (
                base64.b64encode(raw).decode() if kind == "bytesmap" else raw.decode()
            )
        elif kind == "strings" and isinstance(value, bytes):
            out.setdefault(name, []).append(value.decode())
        elif kind == "string" and isinstance(value, bytes):
            out[name] = value.decode()
        elif kind == "bool" and isinstance(value, int):
            out[name] = bool(value)
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object it stands for."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    unknown = dict(_fields(body[len(MAGIC) :]))
    type_meta = unknown.get(1)
    raw = unknown.get(2)
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise ProtobufError("not a runtime.Unknown envelope")
    meta = dict(_fields(type_meta))
    api_version = bytes(meta.get(1, b"")).decode()
    kind = bytes(meta.get(2, b"")).decode()
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ProtobufError(
            f"protobuf bodies of kind {kind or '?'} are not supported; "
            "send JSON (kubectl create -f)"
        )
    return {"apiVersion": api_version, "kind": kind, **_message(raw, schema)}

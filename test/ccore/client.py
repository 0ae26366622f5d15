#!/usr/bin/python3
"""A proxyless gRPC C-core client (Python grpcio) for Bulwark's end-to-end tests.

It reads its xDS bootstrap from GRPC_XDS_BOOTSTRAP_CONFIG, like any gRPC
client, and is driven by one JSON command per line on stdin. Each result is
one JSON line on stdout. Calls run concurrently: a "call" command returns at
once and its result is printed when the call ends, tagged with the
command's id.

Commands:
  {"op": "call", "id": 1, "target": "payments", "timeout": 3.0,
   "payload": "x", "metadata": {"x-chaos": "on"}}
      -> {"id": 1, "code": 0, "name": "OK", "hostname": "good1",
          "details": "", "latency": 0.0042}
  {"op": "ping", "id": 2}  -> {"id": 2, "pong": true}
  {"op": "quit"}           -> exits (so does EOF on stdin)

It calls grpc.testing.TestService/UnaryCall with hand-encoded protobuf
(SimpleRequest.payload.body) and decodes SimpleResponse.hostname (field 6),
so it needs nothing but python3-grpcio.
"""

import json
import sys
import threading
import time

import grpc

METHOD = "/grpc.testing.TestService/UnaryCall"

_out_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj, sort_keys=True)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(number, data):
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def encode_simple_request(body):
    """SimpleRequest{payload: Payload{body: body}}: field 3, inside it field 2."""
    return _field_bytes(3, _field_bytes(2, body))


def _read_varint(buf, i):
    shift = 0
    n = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def decode_hostname(buf):
    """Returns SimpleResponse.hostname (field 6, a string), skipping the rest."""
    i = 0
    hostname = ""
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _read_varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 2:
            n, i = _read_varint(buf, i)
            if number == 6:
                hostname = bytes(buf[i:i + n]).decode("utf-8")
            i += n
        elif wire == 5:
            i += 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
    return hostname


class Client:
    def __init__(self):
        self._lock = threading.Lock()
        self._stubs = {}
        self._channels = []

    def stub(self, target):
        with self._lock:
            s = self._stubs.get(target)
            if s is None:
                ch = grpc.insecure_channel("xds:///" + target)
                self._channels.append(ch)
                s = ch.unary_unary(
                    METHOD,
                    request_serializer=encode_simple_request,
                    response_deserializer=decode_hostname,
                )
                self._stubs[target] = s
            return s

    def call(self, cmd):
        cid = cmd.get("id")
        try:
            stub = self.stub(cmd["target"])
            md = sorted((cmd.get("metadata") or {}).items())
            body = cmd.get("payload", "").encode("utf-8")
            start = time.monotonic()
            fut = stub.future(body, timeout=float(cmd.get("timeout", 3.0)), metadata=md or None)
        except Exception as e:  # a bad command is a result, not a crash
            emit({"id": cid, "code": -1, "name": "CLIENT_ERROR", "details": repr(e)})
            return

        def done(f):
            latency = time.monotonic() - start
            try:
                host = f.result()
                emit({"id": cid, "code": 0, "name": "OK", "hostname": host,
                      "details": "", "latency": latency})
            except grpc.RpcError as e:
                code = e.code()
                emit({"id": cid, "code": code.value[0], "name": code.name,
                      "hostname": "", "details": e.details() or "", "latency": latency})
            except Exception as e:
                emit({"id": cid, "code": -1, "name": "CLIENT_ERROR",
                      "details": repr(e), "latency": latency})

        fut.add_done_callback(done)

    def close(self):
        with self._lock:
            for ch in self._channels:
                ch.close()


def main():
    client = Client()
    emit({"ready": True, "grpc": grpc.__version__})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
        except ValueError as e:
            emit({"id": None, "code": -1, "name": "CLIENT_ERROR", "details": "bad command: %s" % e})
            continue
        op = cmd.get("op")
        if op == "call":
            client.call(cmd)
        elif op == "ping":
            emit({"id": cmd.get("id"), "pong": True})
        elif op == "quit":
            break
        else:
            emit({"id": cmd.get("id"), "code": -1, "name": "CLIENT_ERROR",
                  "details": "unknown op %r" % op})
    client.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A real gRPC server (grpcio) with the standard health service, for flowgate's tests.

    grpc_health_server.py STATE_FILE

Serves `grpc.health.v1.Health/Check` in the clear (h2c) on 127.0.0.1 at a port picked by
the kernel, and prints `listening PORT` once it serves. STATE_FILE is read on every
Check: a JSON object from service name ("" for the whole server) to `SERVING`,
`NOT_SERVING` or `UNKNOWN`; a service it does not name gets NOT_FOUND, as in grpcio's own
health service. Exits when its standard input closes, so it never outlives the test.

The messages are encoded by hand (grpcio-health-checking is not packaged by Debian, and
the service is two one-field messages): the request is `HealthCheckRequest { string
service = 1; }`, the response `HealthCheckResponse { ServingStatus status = 1; }`.
"""

import json
import sys
import threading
from concurrent import futures

import grpc

STATUSES = {"UNKNOWN": 0, "SERVING": 1, "NOT_SERVING": 2, "SERVICE_UNKNOWN": 3}


def varint(buf, pos):
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def service_of(request):
    """Field 1 of a HealthCheckRequest (other fields skipped); "" when absent."""
    service, pos = "", 0
    while pos < len(request):
        key, pos = varint(request, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = varint(request, pos)
        elif wire == 2:
            n, pos = varint(request, pos)
            if field == 1:
                service = request[pos : pos + n].decode("utf-8")
            pos += n
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")
    return service


def encode_response(status):
    # proto3 leaves a field at its default (UNKNOWN = 0) out.
    return b"" if status == 0 else bytes([0x08, status])


def main():
    state_file = sys.argv[1]

    def check(request, context):
        try:
            service = service_of(request)
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad HealthCheckRequest: {e}")
        with open(state_file, encoding="utf-8") as f:
            state = json.load(f)
        print(f"check service={service!r} state={state.get(service)!r}", file=sys.stderr, flush=True)
        if service not in state:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return encode_response(STATUSES[state[service]])

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=lambda b: b, response_serializer=lambda b: b
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        sys.exit("cannot bind 127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)

    def watch_stdin():
        sys.stdin.read()
        server.stop(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()

"""An S3-compatible server on loopback for the object-store tests: moto, one request at a time.

Usage: python3 server.py  -- binds 127.0.0.1 on an ephemeral port, prints `PORT <n>` on stdout
once listening, and exits when its stdin closes (so it dies with the test that started it).

`GET /_kaos/requests` (no S3 bucket name can start with `_`) answers how many S3 requests it
has served, by method, as JSON, e.g. `{"GET": 3, "PUT": 2}`; `DELETE /_kaos/requests` resets
the counts. The tests and the bench count a turn's object requests with it.

moto checks a conditional PutObject's precondition and then stores the object in two steps;
on a threaded server two racing requests could both pass the check. Serializing requests
makes every request atomic, as S3's conditional writes are.

`python3 server.py --ignore-conditions` plays a server that ignores conditional writes: it
drops the `If-Match` and `If-None-Match` headers of every request before moto sees them (the
tests check that such a server is refused).
"""

import json
import os
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()


counts = {}
ignore_conditions = "--ignore-conditions" in sys.argv[1:]


def serialized(environ, start_response):
    method = environ.get("REQUEST_METHOD", "")
    with one_at_a_time:
        if environ.get("PATH_INFO") == "/_kaos/requests":
            if method == "DELETE":
                counts.clear()
            body = json.dumps(counts, sort_keys=True).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        counts[method] = counts.get(method, 0) + 1
        if ignore_conditions:
            environ.pop("HTTP_IF_MATCH", None)
            environ.pop("HTTP_IF_NONE_MATCH", None)
        return list(app(environ, start_response))


def exit_when_stdin_closes():
    sys.stdin.buffer.read()
    os._exit(0)


server = make_server("127.0.0.1", 0, serialized, threaded=True)
threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
print(f"PORT {server.server_port}", flush=True)
server.serve_forever()

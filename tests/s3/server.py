"""An S3-compatible server on loopback for the object-store tests: moto, one request at a time.

Usage: python3 server.py  -- binds 127.0.0.1 on an ephemeral port, prints `PORT <n>` on stdout
once listening, and exits when its stdin closes (so it dies with the test that started it).

moto checks a conditional PutObject's precondition and then stores the object in two steps;
on a threaded server two racing requests could both pass the check. Serializing requests
makes every request atomic, as S3's conditional writes are.
"""

import os
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

app = DomainDispatcherApplication(create_backend_app)
one_at_a_time = threading.Lock()


def serialized(environ, start_response):
    with one_at_a_time:
        return list(app(environ, start_response))


def exit_when_stdin_closes():
    sys.stdin.buffer.read()
    os._exit(0)


server = make_server("127.0.0.1", 0, serialized, threaded=True)
threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
print(f"PORT {server.server_port}", flush=True)
server.serve_forever()

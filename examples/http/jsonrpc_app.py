"""A small JSON-RPC 2.0 service as a WSGI app, for gunicorn.

Served by topologies/http-gunicorn.toml: gunicorn adopts the listeners
ipc-run binds (LISTEN_FDS) and runs this app in its workers.

Methods: `sum` (of a list of numbers), `echo` (its params back) and
`worker` (the pid of the gunicorn worker that answered).
"""

import json
import os


def _sum(params):
    return sum(params)


def _echo(params):
    return params


def _worker(_params):
    return os.getpid()


METHODS = {"sum": _sum, "echo": _echo, "worker": _worker}


def _error(request_id, code, message):
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _answer(body):
    try:
        request = json.loads(body)
    except ValueError:
        return _error(None, -32700, "parse error")
    if not isinstance(request, dict) or "method" not in request:
        return _error(None, -32600, "invalid request")
    request_id = request.get("id")
    method = METHODS.get(request["method"])
    if method is None:
        return _error(request_id, -32601, "method not found")
    try:
        result = method(request.get("params", []))
    except (TypeError, ValueError) as e:
        return _error(request_id, -32602, "invalid params: %s" % e)
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def app(environ, start_response):
    if environ["REQUEST_METHOD"] != "POST":
        start_response("405 Method Not Allowed", [("Allow", "POST"), ("Content-Length", "0")])
        return [b""]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    answer = json.dumps(_answer(environ["wsgi.input"].read(length))).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
    )
    return [answer]

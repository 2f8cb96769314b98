"""How ipc-run holds a server-bound gRPC server's TCP port, checked against
grpcio: a socket bound with SO_REUSEPORT and not listening (what ipc-run
makes before the server starts) lets grpcio bind the same port, again after
a restart, while a bind without the option, or from another uid, fails.

Run with the python that has grpcio, as root (the other-uid case uses
setpriv); prints one `name: result` line per case. tests/run/grpc.rs runs
it and checks every line.
"""
import socket
import subprocess
import sys
from concurrent import futures

import grpc

hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
hold.bind(("127.0.0.1", 0))
port = hold.getsockname()[1]


def bind(reuseport):
    s = socket.socket()
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind(("127.0.0.1", port))
        return "bound"
    except OSError as e:
        return "refused" if e.errno == 98 else str(e)
    finally:
        s.close()


def connect():
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    finally:
        s.close()


print("plain bind:", bind(False))
print("connect to the hold alone:", connect())
other_uid = f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
try:
    s.bind(("127.0.0.1", {port})); print("bound")
except OSError as e:
    print("refused" if e.errno == 98 else e)
"""
run = subprocess.run(
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", other_uid],
    capture_output=True, text=True)
print("other uid, SO_REUSEPORT:", run.stdout.strip() or run.stderr.strip())
for round in ("first", "restarted"):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    got = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
    print(f"grpcio {round}:", "served" if got == port else f"port {got}")
    server.stop(0).wait()

#!/usr/bin/env python3
# Runs N copies of CMD under circus (its library API) and returns once all of
# them have exited (or, with respawn, runs until stopped).
# usage: circus_run.py N CMD [none|plain|fancy]
#   plain: circus's StdoutStream relays the output; fancy: FancyStdoutStream (prefixed)
import os
import shlex
import sys

from circus import get_arbiter
from tornado import ioloop

n, argv = int(sys.argv[1]), shlex.split(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else "none"
watcher = {"name": "w", "cmd": argv[0], "args": argv[1:], "numprocesses": n,
           "respawn": False, "copy_env": True}
if mode != "none":
    watcher["stdout_stream"] = {"class": "StdoutStream" if mode == "plain" else "FancyStdoutStream"}
tag = os.getpid()
arbiter = get_arbiter([watcher], controller=f"ipc:///tmp/circus_ctl_{tag}",
                      pubsub_endpoint=f"ipc:///tmp/circus_pub_{tag}",
                      check_delay=0.05, loglevel="ERROR")
state = {"seen": False}


def check():
    w = arbiter.get_watcher("w")
    if w is None:
        return
    if not state["seen"]:
        state["seen"] = w.is_active()
    elif w.is_stopped():
        poll.stop()
        arbiter.loop.add_callback(arbiter.stop)


poll = ioloop.PeriodicCallback(check, 5)
poll.start()
try:
    arbiter.start()
finally:
    arbiter.stop()

#!/usr/bin/env python3
# supervisord event listener: once EXPECT program processes have exited,
# sends SIGTERM to supervisord (its parent) and exits, so that `supervisord -n`
# returns when the work is done (the "start N and wait" workloads).
import os
import signal
import sys

expect = int(os.environ.get("EXPECT", "1"))
seen = 0
while True:
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    header = dict(x.split(":") for x in sys.stdin.readline().split())
    sys.stdin.read(int(header["len"]))
    if header["eventname"] in ("PROCESS_STATE_EXITED", "PROCESS_STATE_FATAL"):
        seen += 1
    sys.stdout.write("RESULT 2\nOK")
    sys.stdout.flush()
    if seen >= expect:
        os.kill(os.getppid(), signal.SIGTERM)
        sys.exit(0)

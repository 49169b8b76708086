"""A stand-in for `python -m bench_agent.run.worker` that misbehaves on purpose.

runner.py's worker command is its seam for tests: these are real child processes
that hang, crash or print garbage, so the runner's handling is tested for real.
Usage: misbehaving_worker.py MODE [PIDFILE [MARKER]]
"""

import json
import os
import signal
import subprocess
import sys
import time

mode = sys.argv[1]
request = json.loads(sys.stdin.read())

if mode == "hang":
    time.sleep(600)
elif mode == "hang-ignoring-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", file=sys.stderr, flush=True)
    time.sleep(600)
elif mode == "hang-with-grandchild":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(sys.argv[2], "w") as handle:
        handle.write(str(child.pid))
    time.sleep(600)
elif mode == "hang-with-escaped-grandchild":
    # A tool that left the process group (setsid) but kept our stdout and stderr.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             start_new_session=True)
    with open(sys.argv[2], "w") as handle:
        handle.write(str(child.pid))
    time.sleep(600)
elif mode == "exit-leaving-child":
    # Answers and exits normally, but a tool it started runs on (not on our pipes).
    child = subprocess.Popen(["bash", "-c", f"exec -a {sys.argv[3]} sleep 600"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(sys.argv[2], "w") as handle:
        handle.write(str(child.pid))
    print(json.dumps({"ok": False, "status": "ERROR", "error": "ToolFailed",
                      "message": "fio failed"}))
elif mode == "hang-with-tool":
    # A check whose tool was started through the seam, as run_tool does.
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    from bench_agent.core.process import spawn

    tool = spawn(["bash", "-c", f"exec -a {sys.argv[3]} sleep 600"])
    with open(sys.argv[2], "w") as handle:
        handle.write(str(tool.pid))
    time.sleep(600)
elif mode == "realtime-signal":
    os.kill(os.getpid(), signal.SIGRTMIN + 1)  # default action: terminate
    time.sleep(5)
elif mode == "abort":
    os.abort()
elif mode == "exit3":
    print("nvml: driver/library version mismatch", file=sys.stderr)
    sys.exit(3)
elif mode == "garbage":
    print("\x1b[31mSegmentation fault?\x1b[0m {not json")
elif mode == "bad-measurement":
    print(json.dumps({"ok": True, "measurements": [
        {"check": request["check"], "metric": "m", "value": "fast", "unit": "bytes/s"}]}))
elif mode == "bad-inventory":  # a float where a count belongs: a fact nobody read
    print(json.dumps({"ok": True, "inventory": {
        "host": {"hostname": "n1"}, "cpu": {"logical_cpus": 2.5}}}))
elif mode == "empty":
    print(json.dumps({"ok": True, "measurements": []}))
elif mode == "missing-tool":
    print(json.dumps({"ok": False, "status": "SKIP", "error": "ToolMissing",
                      "message": "fio is not installed"}))
elif mode == "tool-failed":
    print(json.dumps({"ok": False, "status": "ERROR", "error": "ToolFailed",
                      "message": "fio failed (exit code 1): file:filesetup.c: No space left"}))
elif mode == "skip-named-tool-failed":
    # The status decides, whatever the class was called: the names lie on purpose.
    print(json.dumps({"ok": False, "status": "SKIP", "error": "ToolFailed",
                      "message": "no peer given"}))
elif mode == "error-named-tool-missing":
    print(json.dumps({"ok": False, "status": "ERROR", "error": "ToolMissing",
                      "message": "fio died"}))
elif mode == "error-without-status":
    # Protocol 1's answer: a class name and no status.
    print(json.dumps({"ok": False, "error": "ToolMissing", "message": "fio is not installed"}))
elif mode == "error-with-pass-status":
    print(json.dumps({"ok": False, "status": "PASS", "error": "NotApplicable",
                      "message": "nothing to do"}))
else:
    raise SystemExit(f"unknown mode {mode}")

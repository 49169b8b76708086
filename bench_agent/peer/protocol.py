"""The peer's wire protocol: what a network check sends to `bench-agent peer`.

One JSON object per line over TCP to the control port, one JSON object back. The
server side is peer/server.py; the client side (network checks) needs only this
module, so a check never imports the server.
"""

from __future__ import annotations

import json
import socket
from typing import Any

PROTOCOL = 1
# Defaults are each tool's own default port, so a peer started by hand with the
# tools' defaults is reachable too: iperf3 5201 (iperf3 --help: "-p, --port"),
# sockperf 11111 (sockperf --help: "-p,--port= ... default 11111"), qperf 19765
# (qperf(1): "--listen_port ... default 19765"), perftest 18515 (DEF_PORT).
DEFAULT_PORTS: dict[str, int] = {
    "control": 5200,
    "iperf3": 5201,
    "sockperf": 11111,
    "qperf": 19765,
    "perftest": 18515,
}
MAX_REQUEST_BYTES = 4096


def peer_request(
    host: str, port: int, request: dict[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """Send one control request and return the response object.

    Raises OSError (refused, unreachable, timed out) or ValueError (not a
    response); the network checks turn both into an ERROR naming host:port.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > 1 << 20:
                raise ValueError("response too long")
    response = json.loads(data.decode("utf-8", errors="replace") or "null")
    if not isinstance(response, dict):
        raise ValueError(f"not a peer response: {data[:200]!r}")
    return response

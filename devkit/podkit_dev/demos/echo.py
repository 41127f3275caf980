"""`podkit demo` for echo: a line answered during a drain."""

from __future__ import annotations

import signal
import socket

from podkit_dev.demo import Narrator
from podkit_dev.servers import HOST, HelperProcess, free_port, wait_for


def demo(narrator: Narrator) -> None:
    """`podkit demo`: echo a line, show readiness, then drain with a line still in flight."""
    port = free_port()
    narrator.step(f"start `podkit echo --listen {HOST}:{port} --delay 1s` (a line-echo server)")
    process = HelperProcess("echo", "--listen", f"{HOST}:{port}", "--delay", "1s")
    with narrator.helper(process) as echo:
        narrator.show("GET /readyz", echo.get("/readyz")[1].decode())
        with socket.create_connection((HOST, port), timeout=10) as conn:
            conn.sendall(b"hello podkit\n")
            wait_for(lambda: "echo_lines_in_flight 1.0" in echo.metrics(), what="line in flight")
            narrator.step("sent 'hello podkit' and, while the answer is still in flight, SIGTERM")
            echo.process.send_signal(signal.SIGTERM)
            answer = conn.makefile("rb").readline().decode().rstrip()
        narrator.show("answer received during the drain", answer)
        code = echo.wait_exit(timeout=30)
        narrator.result(code == 0 and answer == "hello podkit", f"drained and exited {code}")

"""A real nearestd for the Python tests (the browser test and the examples' test).

Starts the daemon built by CMake on a temporary database made with --init from the
bundled dataset, on free loopback ports for the line protocol and for HTTP, and talks
the line protocol to it with FORMAT json (one JSON document per reply line), so that a
test can compare what a client shows with what the protocol answers.

Ports come from binding port 0 and closing it, which another process may take before the
daemon binds it; start() therefore retries with new ports a few times (5), and waits up
to 20 s for the daemon to accept on both ports (the database is built once, about 1 s,
slower under AddressSanitizer).
"""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time

START_ATTEMPTS = 5
START_TIMEOUT_S = 20.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class LineClient:
    """One connection on the line protocol, switched to FORMAT json."""

    def __init__(self, port, timeout_s=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.replies = self.sock.makefile("r", encoding="utf-8", newline="\n")
        reply = self.ask("FORMAT json")
        if not reply.get("ok"):
            raise RuntimeError("FORMAT json refused: %r" % reply)

    def ask(self, line):
        """Sends one command line and returns its reply, parsed."""
        self.sock.sendall(line.encode("utf-8") + b"\n")
        text = self.replies.readline()
        if not text:
            raise RuntimeError("the daemon closed the connection after %r" % line)
        return json.loads(text)

    def close(self):
        self.replies.close()
        self.sock.close()


class Daemon:
    """nearestd on free loopback ports; use start(), then stop() (or `with`)."""

    def __init__(self, binary, dataset):
        self.binary = binary
        self.dataset = dataset
        self.tmp = tempfile.TemporaryDirectory(prefix="nearestd-py-")
        self.db = os.path.join(self.tmp.name, "nearestd.db")
        self.log_path = os.path.join(self.tmp.name, "nearestd.log")
        self.proc = None
        self.line_port = None
        self.http_port = None

    @property
    def http_base(self):
        return "http://127.0.0.1:%d" % self.http_port

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start(self):
        for _ in range(START_ATTEMPTS):
            self.line_port, self.http_port = free_port(), free_port()
            if self.line_port == self.http_port:
                continue
            with open(self.log_path, "w") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "--init", "--db", self.db, "--dataset", self.dataset,
                     "--listen", "127.0.0.1:%d" % self.line_port,
                     "--http", "127.0.0.1:%d" % self.http_port],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _accepts(self.line_port) and _accepts(self.http_port):
                    return self
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("nearestd did not accept within %.0f s:\n%s"
                                   % (START_TIMEOUT_S, self.log()))
            if "address already in use" not in self.log():
                raise RuntimeError("nearestd exited with %d:\n%s"
                                   % (self.proc.returncode, self.log()))
        raise RuntimeError("no free ports for nearestd after %d attempts" % START_ATTEMPTS)

    def stop(self):
        """SIGTERM, then returns the daemon's exit status (0 when it stopped cleanly)."""
        status = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            status = self.proc.returncode
            self.proc = None
        self.tmp.cleanup()
        return status

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

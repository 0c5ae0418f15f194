"""Run the real `modelscribe` command as a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def es_flags(node, target: str | None = None) -> list[str]:
    flags = ["--es-url", node.url, "--ca-cert", node.ca_cert, "--api-key-file", node.api_key_file]
    if target:
        flags += ["--index", target]
    return flags


def run_once(args: list[str], timeout: float = 120, env: dict | None = None) -> Result:
    done = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    return Result(done.returncode, done.stdout, done.stderr)


class Daemon:
    """`modelscribe run` in the background; stop() sends SIGTERM."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self._log = open(log_path, "wb")
        self.log_path = log_path
        self.process = subprocess.Popen([sys.executable, "-m", "agent", "run", *args],
                                        stdout=subprocess.DEVNULL, stderr=self._log)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class GrowingFiles:
    """Appends numbered lines to a few files from a thread, remembering offsets."""

    def __init__(self, directory: Path, files: int = 3, rate: float = 1500.0) -> None:
        self.paths = [directory / f"model-{i}.log" for i in range(files)]
        self.expected: set[tuple[str, int]] = set()
        self._rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.written = 0

    def _run(self) -> None:
        handles = [open(path, "ab") for path in self.paths]
        try:
            while not self._stop.is_set():
                for number, (path, handle) in enumerate(zip(self.paths, handles)):
                    offset = handle.tell()
                    handle.write(b"%d request=%08d model=resnet50 status=200 latency_ms=%d\n"
                                 % (number, self.written, self.written % 97))
                    handle.flush()
                    self.expected.add((str(path), offset))
                    self.written += 1
                time.sleep(len(self.paths) / self._rate)
        finally:
            for handle in handles:
                handle.close()

    def __enter__(self) -> "GrowingFiles":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


_WINDOW = 500_000  # lets one search return every document of these tests


def create_index(request, index: str) -> None:
    """An index whose every document one search can return."""
    status, body = request("PUT", f"/{index}", {"settings": {"max_result_window": _WINDOW}})
    assert status == 200, body

"""Run the real `modelscribe` command as a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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

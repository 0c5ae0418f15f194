"""The real service: the .deb installed in a Debian root booted with systemd as
PID 1 in a systemd-nspawn container, shipping a log in /var/log to the test
suite's real Elasticsearch node on the host (the container shares the host's
network: nspawn's default without --private-network).

What it takes on these machines: a tmpfs on /run/systemd/nspawn, and
``--register=no --keep-unit`` (there is no host systemd bus). Commands run in
the container through ``nsenter`` into its PID 1's namespaces.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.elasticsearch]

READY_WITHIN = 60.0  # seconds from boot to READY=1 (boot included)


class Container:
    def __init__(self, tools, root: Path, log: Path) -> None:
        self.tools = tools
        nspawn = tools.need("systemd-nspawn")
        nsenter = tools.need("nsenter")
        self._nsenter = nsenter
        run_dir = Path("/run/systemd/nspawn")
        run_dir.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mountpoint", "-q", str(run_dir)]).returncode != 0:
            tools.run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(run_dir))
        self._log = open(log, "wb")
        self.process = subprocess.Popen(
            [nspawn, "--register=no", "--keep-unit", "--quiet", "-M", f"ms-{uuid.uuid4().hex[:8]}", "-D", str(root),
             "-b", "--console=pipe"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        self.leader = self._find_leader()

    def _find_leader(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            if self.process.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited with {self.process.returncode}")
            if children.exists() and children.read_text().split():
                return int(children.read_text().split()[0])
            time.sleep(0.1)
        raise AssertionError("the container's PID 1 did not appear")

    def sh(self, *command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.tools.run(self._nsenter, "-t", str(self.leader), "-a", *command, check=check, timeout=timeout)

    def show(self, *properties: str) -> dict[str, str]:
        done = self.sh("systemctl", "show", "modelscribe", *[f"--property={p}" for p in properties], check=False)
        if done.returncode != 0:  # early in the boot: systemd's socket is not there yet
            return {name: "" for name in properties}
        return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.25)
        raise AssertionError(f"{what} not within {timeout}s (last: {last!r}); journal:\n{self.journal()}")

    def journal(self) -> str:
        return self.sh("journalctl", "-u", "modelscribe", "--no-pager", "-o", "cat", check=False).stdout

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # nspawn: a clean poweroff of the container
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._log.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _offsets(registry: Path) -> dict[str, int]:
    data = json.loads(registry.read_text())
    return {entry["path"]: entry["offset"] for entry in data["entries"]}


def test_the_packaged_service_ships_a_log_and_stops_cleanly(tools, deb, deb_upgrade, root, es_node, es, tmp_path):
    index = f"modelscribe-nspawn-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    (root / "tmp" / deb.name).write_bytes(deb.read_bytes())
    tools.chroot(root, "dpkg", "-i", f"/tmp/{deb.name}")
    # A model log as Debian keeps logs: root:adm, 0640, in a directory others cannot enter.
    logs = root / "var/log/models"
    logs.mkdir(mode=0o750)
    log = logs / "model.log"
    log.write_text("".join(json.dumps({"message": f"boot line {n}", "level": "info"}) + "\n" for n in range(50)))
    tools.chroot(root, "chown", "-R", "root:adm", "/var/log/models")
    log.chmod(0o640)
    etc = root / "etc/modelscribe"
    (etc / "ca.pem").write_bytes(Path(es_node.ca_cert).read_bytes())
    key = etc / "es-api-key"  # handed over by LoadCredential=, never read by the agent from here
    key.write_text(es_node.api_key + "\n")
    key.chmod(0o600)
    config = etc / "modelscribe.yml"
    text = config.read_text()
    for old, new in (("#paths: []", "paths: [/var/log/models/*.log]"),
                     ("#es_urls: ['http://localhost:9200']", f"es_urls: ['{es_node.url}']"),
                     ("#ca_cert:", "ca_cert: ca.pem"), ("#index:", f"index: {index}"),
                     ("#metrics_addr: 127.0.0.1:9464", f"metrics_addr: 127.0.0.1:{port}")):
        assert f"\n{old}\n" in text, old
        text = text.replace(f"\n{old}\n", f"\n{new}\n")
    config.write_text(text)

    container = Container(tools, root, tmp_path / "nspawn.log")
    try:
        booted = time.monotonic()
        # The unit is enabled by postinst, so it starts at boot; active means READY=1 arrived.
        state = container.wait_for(lambda: (s := container.show("ActiveState", "StatusText", "MainPID"))
                                   ["ActiveState"] == "active" and s, READY_WITHIN, "the service ready")
        assert state["StatusText"].startswith("shipping: ")
        print(f"ready {time.monotonic() - booted:.1f}s after boot")
        main_pid = state["MainPID"]
        status = container.sh("cat", f"/proc/{main_pid}/status").stdout
        fields = dict(line.split(":", 1) for line in status.splitlines())
        assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
        assert int(fields["CapEff"].strip(), 16) == 0 and int(fields["CapBnd"].strip(), 16) == 0
        adm = container.sh("getent", "group", "adm").stdout.split(":")[2]
        assert adm in fields["Groups"].split()
        assert container.sh("stat", "-c", "%U", f"/proc/{main_pid}").stdout.strip() == "modelscribe"
        # Writable for the agent: its state directory, nothing the host shares (audit 11: ProtectSystem=strict
        # left /dev/shm and /run/lock writable, and a file: output there was created).
        for place, writable in (("/var/lib/modelscribe", True), ("/dev/shm", False), ("/run/lock", False)):
            probe = container.sh("nsenter", "-t", main_pid, "-m", "--", "setpriv", "--reuid=modelscribe",
                                 "--regid=modelscribe", "--init-groups", "touch", f"{place}/modelscribe-probe",
                                 check=False)
            assert (probe.returncode == 0) == writable, (place, probe)
        container.sh("rm", "-f", "/var/lib/modelscribe/modelscribe-probe")

        # The hardening leaves reading /var/log and reaching the host's node possible.
        container.wait_for(lambda: es.count(index) == 50 or None, 60, "50 documents indexed")
        with open(log, "a") as handle:
            handle.writelines(json.dumps({"message": f"late line {n}"}) + "\n" for n in range(10))
        container.wait_for(lambda: es.count(index) == 60 or None, 60, "the appended lines indexed")
        # At least 60: the agent's own metric document (every 60 s) is acknowledged too,
        # and a slow run reaches its first one before this check.
        container.wait_for(lambda: _acked(container.show("StatusText")["StatusText"]) >= 60 or None, 30,
                           "STATUS= showing the acknowledgements")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert response.status == 200

        # The watchdog: pings keep a short WatchdogSec= satisfied; a frozen agent is killed and restarted.
        dropin = root / "etc/systemd/system/modelscribe.service.d"
        dropin.mkdir(parents=True)
        (dropin / "watchdog.conf").write_text("[Service]\nWatchdogSec=3s\nTimeoutAbortSec=2s\n")
        container.sh("systemctl", "daemon-reload")
        container.sh("systemctl", "restart", "modelscribe")
        first = container.show("MainPID", "WatchdogUSec")
        assert first["WatchdogUSec"] == "3s"
        time.sleep(5)
        assert container.show("MainPID", "NRestarts") == {"MainPID": first["MainPID"], "NRestarts": "0"}
        container.sh("kill", "-STOP", first["MainPID"])
        container.wait_for(lambda: (s := container.show("MainPID", "NRestarts", "ActiveState"))["NRestarts"] == "1"
                           and s["ActiveState"] == "active" and s["MainPID"] not in ("0", first["MainPID"]), 30,
                           "a restart by the watchdog")
        assert "Watchdog timeout" in container.sh("journalctl", "--no-pager", "-o", "cat", "-u", "modelscribe").stdout
        (dropin / "watchdog.conf").unlink()
        container.sh("systemctl", "daemon-reload")

        # An upgrade while it runs: postinst restarts it on the new package, nothing lost or doubled.
        before = container.show("MainPID")["MainPID"]
        (root / "var/tmp" / deb_upgrade.name).write_bytes(deb_upgrade.read_bytes())  # /tmp is a tmpfs in there
        container.sh("dpkg", "-i", f"/var/tmp/{deb_upgrade.name}", timeout=300)
        version = container.sh("dpkg-query", "-W", "-f", "${Version}", "modelscribe").stdout
        assert version.endswith("+upgrade1")
        container.wait_for(lambda: (s := container.show("MainPID", "ActiveState"))["ActiveState"] == "active"
                           and s["MainPID"] not in ("0", before), 60, "the agent restarted by the upgrade")
        with open(log, "a") as handle:
            handle.writelines(json.dumps({"message": f"upgraded line {n}"}) + "\n" for n in range(5))
        container.wait_for(lambda: es.count(index) == 65 or None, 60, "the lines written after the upgrade")

        # systemctl reload: a new glob and a label applied by the same process, delivery going on.
        running = container.show("MainPID")["MainPID"]
        other = root / "var/log/other"
        other.mkdir(mode=0o750)
        (other / "worker.log").write_text("".join(json.dumps({"message": f"other {n}"}) + "\n" for n in range(3)))
        tools.chroot(root, "chown", "-R", "root:adm", "/var/log/other")
        (other / "worker.log").chmod(0o640)
        config.write_text(config.read_text().replace(
            "\npaths: [/var/log/models/*.log]\n", "\npaths: [/var/log/models/*.log, /var/log/other/*.log]\n")
            .replace("\n#labels: []\n", "\nlabels: [stage=reloaded]\n"))
        container.sh("systemctl", "reload", "modelscribe")
        container.wait_for(lambda: es.count(index) == 68 or None, 60, "the file matched after the reload")
        assert container.show("MainPID", "ActiveState") == {"MainPID": running, "ActiveState": "active"}
        shipped = [doc for doc in es.search_all(index) if doc["message"].startswith("other ")]
        assert len(shipped) == 3 and all(doc["labels"] == {"stage": "reloaded"} for doc in shipped), shipped
        assert "configuration reloaded" in container.journal()

        # Stop: SIGTERM, a clean exit within TimeoutStopSec, offsets saved at the end of the file.
        stopped = container.sh("systemctl", "stop", "modelscribe")
        assert stopped.returncode == 0
        after = container.show("ActiveState", "Result", "ExecMainStatus", "NRestarts")
        # (the upgrade's restart job set the count of automatic restarts back to 0)
        assert after == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0", "NRestarts": "0"}
        assert _offsets(root / "var/lib/modelscribe/registry.json")["/var/log/models/model.log"] == log.stat().st_size
        assert oct((root / "var/lib/modelscribe").stat().st_mode & 0o777) == "0o700"
        journal = container.journal()
        for expected in ("config ok", "modelscribe starting", "shutting down", "stopped"):
            assert expected in journal, expected
        assert es_node.api_key not in journal

        # Config errors the service user meets: exit code 2, a clear line, and no restart loop.
        text = config.read_text()
        for broken, message in ((text + "workers: 999\n", "workers: 999 is out of range"), (text, "Permission denied")):
            config.write_text(broken)
            config.chmod(0o600 if message == "Permission denied" else 0o644)  # root's, unreadable to the agent
            assert container.sh("systemctl", "start", "modelscribe", check=False).returncode != 0
            time.sleep(7)  # past RestartSec=5s: a restart would have happened
            failed = container.show("ActiveState", "Result", "ExecMainStatus", "NRestarts")
            # (a start job counts restarts from 0)
            assert failed == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "2",
                              "NRestarts": "0"}, (message, failed)
            assert message in container.journal()
            container.sh("systemctl", "reset-failed", "modelscribe")
    finally:
        container.close()
    assert es.count(index) == 68  # nothing doubled by the restarts, the upgrade, the reload or the stop


def _acked(status: str) -> int:
    """N of the "..., N acked" that STATUS= ends with (0 when it does not yet)."""
    found = re.search(r"(\d+) acked", status)
    return int(found.group(1)) if found else 0

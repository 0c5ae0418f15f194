"""packaging/modelscribe.service: the directives the service relies on, agreeing
with the agent's code (exit codes, credential names, timeouts, paths), and
``systemd-analyze verify`` clean on a Debian root with the package unpacked."""

from __future__ import annotations

from pathlib import Path

from agent.config.options import BY_NAME
from agent.errors import EXIT_CONFIG
from agent.pipeline import SHUTDOWN_GRACE
from agent.service import CREDENTIALS

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "modelscribe.service"


def directives() -> dict[str, list[str]]:
    """``Section.Key`` -> values in order (a key may repeat: ExecReload=, SetCredential=)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def one(name: str) -> str:
    values = directives()[f"Service.{name}"] if "." not in name else directives()[name]
    assert len(values) == 1, (name, values)
    return values[0]


def seconds(value: str) -> float:
    return float(value[:-1]) if value.endswith("s") else float(value)


def test_notify_watchdog_reload_and_restart_policy():
    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    config = "--config /etc/modelscribe/modelscribe.yml"
    assert one("ExecStartPre") == f"-/usr/bin/modelscribe check config {config}"
    assert one("ExecStart") == f"/usr/bin/modelscribe run {config}"
    assert directives()["Service.ExecReload"] == [f"/usr/bin/env -u CREDENTIALS_DIRECTORY /usr/bin/modelscribe "
                                                  f"check config --no-credentials {config}",
                                                  "/bin/kill -HUP $MAINPID"]
    assert one("Restart") == "on-failure"
    assert one("RestartPreventExitStatus") == str(EXIT_CONFIG)  # a config error never restart-loops
    # The agent pings every WatchdogSec/2 from a loop that wakes at least every second.
    assert seconds(one("WatchdogSec")) >= 10
    # systemd must give the agent its whole bounded shutdown before SIGKILL.
    assert seconds(one("TimeoutStopSec")) > BY_NAME["shutdown_timeout"].default + SHUTDOWN_GRACE
    assert one("Install.WantedBy") == "multi-user.target"


def test_user_directories_and_credentials():
    assert one("User") == one("Group") == "modelscribe"
    assert one("SupplementaryGroups") == "adm"
    assert one("StateDirectory") == "modelscribe" and one("StateDirectoryMode") == "0700"
    assert BY_NAME["state_dir"].default == "/var/lib/modelscribe"
    assert one("ConfigurationDirectory") == "modelscribe"
    assert one("UMask") == "0077"
    loaded = directives()["Service.LoadCredential"]
    assert sorted(loaded) == sorted(f"{name}:/etc/modelscribe/{name}" for name in CREDENTIALS.values())
    # Each credential optional: a blank fallback the agent reads as "not given".
    assert sorted(directives()["Service.SetCredential"]) == sorted(f"{name}:\\n" for name in CREDENTIALS.values())


def test_hardening():
    expected = {
        "ProtectSystem": "strict", "ProtectHome": "read-only", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "NoNewPrivileges": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes",
        "ProtectHostname": "yes", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallFilter": "@system-service",
        "SystemCallArchitectures": "native", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
        "ReadOnlyPaths": "-/dev/shm -/run/lock", "RemoveIPC": "yes",
    }
    for key, value in expected.items():
        assert one(key) == value, key
    # ProtectSystem=strict already makes /var/log read-only; nothing else may be writable.
    assert "Service.ReadWritePaths" not in directives()


def test_systemd_analyze_verify_is_clean(tools, deb, root):
    analyze = tools.need("systemd-analyze")
    tools.run("dpkg-deb", "-x", str(deb), str(root))
    done = tools.run(analyze, "verify", "--man=no", f"--root={root}", "/lib/systemd/system/modelscribe.service",
                     check=False)
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done

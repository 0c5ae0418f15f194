"""Security setup for the local OpenSearch node: certificates, settings, users.

Used by opensearch_local.py when a node starts with ``security=True``.  It
configures the *real* security plugin (``opensearch-security``, fetched by
opensearch_dist.py), not a proxy in front of the node.

What it guarantees:

* ``make_certs(dir)`` writes ``ca.crt``, ``node.crt`` and ``node.key``
  (PKCS#8 PEM, which the plugin requires) made with the ``openssl`` command:
  a throw-away CA whose key is deleted afterwards, and a node certificate for
  ``127.0.0.1``/``localhost`` usable for both server and client auth (the
  plugin also uses it on the transport layer, node to node).
* ``settings()`` are the ``plugins.security.*`` settings for TLS on HTTP and
  transport with those files, the node certificate's DN as the only node DN,
  and ``allow_default_init_securityindex`` so the plugin creates its security
  index from ``config/opensearch-security/*.yml`` at first start (no
  securityadmin run needed, no admin certificate made).
* ``write_config`` copies the plugin's default security config into the
  node's config dir; ``write_users`` replaces its demo users (whose
  passwords are public) with a single ``admin`` user, in the ``admin``
  backend role that the default roles mapping gives ``all_access``, and the
  password bcrypt-hashed by the plugin's own ``tools/hash.sh``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from opensearch_dist import SECURITY_PLUGIN, HarnessError

NODE_DN = "CN=node,O=modelscribe"
CA_SUBJECT = "/O=modelscribe/CN=modelscribe test CA"


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise HarnessError("`openssl` not found on PATH: it is needed for the node's certificates")
    proc = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f"openssl {args[0]} failed:\n{proc.stdout}{proc.stderr}")


def make_certs(out: Path) -> None:
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "ext.cnf").write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                 "-out", "ca.crt", "-days", "3650", "-subj", CA_SUBJECT, cwd=work)
        # genpkey writes PKCS#8, the only PEM key format the plugin reads.
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", "node.key", cwd=work)
        subject = "/" + "/".join(reversed(NODE_DN.split(",")))  # "/O=modelscribe/CN=node"
        _openssl("req", "-new", "-key", "node.key", "-out", "node.csr", "-subj", subject,
                 cwd=work)
        _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "node.crt", "-days", "3650",
                 "-extfile", "ext.cnf", cwd=work)
        for name in ("ca.crt", "node.crt", "node.key"):
            shutil.copy(work / name, out / name)
    for name in ("ca.crt", "node.crt"):
        (out / name).chmod(0o644)
    (out / "node.key").chmod(0o600)


def settings() -> dict:
    ssl = {}
    for layer in ("transport", "http"):
        # Paths are relative to the config dir, where the plugin reads them.
        ssl.update({f"plugins.security.ssl.{layer}.pemcert_filepath": "certs/node.crt",
                    f"plugins.security.ssl.{layer}.pemkey_filepath": "certs/node.key",
                    f"plugins.security.ssl.{layer}.pemtrustedcas_filepath": "certs/ca.crt"})
    return {
        **ssl,
        "plugins.security.ssl.http.enabled": True,
        "plugins.security.ssl.transport.enforce_hostname_verification": False,
        "plugins.security.nodes_dn": [NODE_DN],
        "plugins.security.allow_default_init_securityindex": True,
        "plugins.security.restapi.roles_enabled": ["all_access"],
        "plugins.security.system_indices.enabled": True,
        # No audit index on a throw-away node: less noise, less write load.
        "plugins.security.audit.type": "noop",
    }


def write_config(config: Path, plugin_config: Path) -> None:
    dest = config / SECURITY_PLUGIN
    dest.mkdir()
    for source in sorted(plugin_config.glob("*.yml")):
        shutil.copy(source, dest / source.name)


def hash_password(dist: Path, java: Path, password: str) -> str:
    tool = dist / "plugins" / SECURITY_PLUGIN / "tools" / "hash.sh"
    env = dict(os.environ, OPENSEARCH_JAVA_HOME=str(java))
    env.pop("JAVA_TOOL_OPTIONS", None)
    # The password goes through the environment, not the command line (ps).
    env["MODELSCRIBE_OS_PW"] = password
    proc = subprocess.run(["bash", str(tool), "-env", "MODELSCRIBE_OS_PW"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("$2")]
    if proc.returncode != 0 or not lines:
        raise HarnessError(f"{tool} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return lines[-1].strip()


def write_users(config: Path, dist: Path, java: Path, username: str, password: str) -> None:
    digest = hash_password(dist, java, password)
    (config / SECURITY_PLUGIN / "internal_users.yml").write_text(
        '_meta:\n  type: "internalusers"\n  config_version: 2\n'
        f'{username}:\n  hash: "{digest}"\n  reserved: true\n'
        '  backend_roles:\n  - "admin"\n'
        '  description: "modelscribe test harness administrator"\n')

"""Obtaining and assembling an OpenSearch distribution for the local test harness.

Used by opensearch_local.py; no node is started here.

Why assembling: OpenSearch publishes its *integ-test zip* on Maven Central
(``org.opensearch.distribution.integ-test-zip:opensearch``), but that zip has
only the transport module: no ingest processors, no painless, no
analysis-common.  The modules themselves are published as plain jars
(``org.opensearch.plugin:ingest-common``, ``lang-painless``,
``analysis-common``, with their libraries), so this module fetches them with
Maven and lays them out as the full distribution would, writing each module's
``plugin-descriptor.properties`` (and the real module's security policy) itself.
lang-mustache is included because ingest processors render their ``{{ }}``
templates with it.  The security plugin is published as
an installable zip (``org.opensearch.plugin:opensearch-security:<V>.0:zip``)
and is unpacked into ``plugins/``.

What it guarantees:

* ``find_java_home(version)`` returns ``$OPENSEARCH_JAVA_HOME`` if set (it
  must have ``bin/java``), else the newest JDK under /usr/lib/jvm that fits:
  2.x needs Java 11..23 (it relies on the Java security manager, removed in
  Java 24), 3.x needs Java >= 21.  Otherwise HarnessError lists the JDKs seen.
* ``fetch_distribution(version)`` returns ``<cache>/opensearch-<version>``,
  ``<cache>`` being ``$MODELSCRIBE_OS_CACHE`` (default
  ``~/.cache/modelscribe/opensearch``).  Downloads (``mvn dependency:copy``
  and ``dependency:copy-dependencies``) land in ``<cache>/downloads-<version>``
  and are kept, so a second fetch never uses the network.
* The tree is built in ``<cache>/.unpack-*`` and renamed into place, so it
  exists only complete (``MARKER`` is written last); an exclusive ``flock``
  on ``<cache>/.lock`` serialises fetchers.  Unix modes are restored and the
  tree is never written to afterwards (nodes get their own config/data/logs).
  MARKER holds the layout (module list): a tree of an older layout is rebuilt.
* Every jar the module poms pull in (minus the server itself, which the zip
  ships in ``lib/``) is placed in exactly one module; an unexpected jar is an
  error rather than a silently missing class at run time.
* The security plugin is optional: when Maven cannot serve it for `version`
  the tree is built without it and ``has_security(tree)`` is False (the
  harness then refuses ``security=True`` with that reason).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# Maven, unzip, the atomic cache tree and the JDK search are shared with
# elasticsearch_dist (node_dist.py, next to this file).
try:
    import node_dist  # noqa: F401
except ModuleNotFoundError:  # loaded by file path, without scripts/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_dist import (  # noqa: E402,F401  (HarnessError re-exported)
    HarnessError, build_tree, major as _major, mvn, newest_jdk, unzip as _unzip)

log = logging.getLogger("opensearch_local.dist")

MARKER = ".modelscribe-complete"
SECURITY_PLUGIN = "opensearch-security"

# The modules assembled from Maven jars: name -> (plugin class, extended
# plugins, artifactId of its main jar, prefixes of the library jars it owns).
# extended.plugins mirrors the real distribution: ingest-common and
# analysis-common ship painless whitelist extensions (META-INF/services/
# org.opensearch.painless.spi.PainlessExtension), so they extend lang-painless
# and see its SPI classes through the parent class loader.
MODULES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "lang-painless": ("org.opensearch.painless.PainlessPlugin", "", "lang-painless",
                      ("lang-painless-", "opensearch-scripting-painless-spi-",
                       "antlr4-runtime-", "asm-")),
    "ingest-common": ("org.opensearch.ingest.common.IngestCommonPlugin", "lang-painless",
                      "ingest-common", ("ingest-common-", "opensearch-grok-",
                                        "opensearch-dissect-", "joni-", "jcodings-")),
    "analysis-common": ("org.opensearch.analysis.common.CommonAnalysisPlugin", "lang-painless",
                        "analysis-common", ("analysis-common-",)),
    # Mustache renders the {{ }} templates of ingest processors (set values,
    # fail messages, on_failure metadata); without it they stay literal text.
    # Published under the artifactId lang-mustache-client.
    "lang-mustache": ("org.opensearch.script.mustache.MustachePlugin", "",
                      "lang-mustache-client", ("lang-mustache-client-", "compiler-")),
}
# The permissions the real modules grant (plugin-security.policy).
POLICIES = {
    # Painless generates classes at run time.
    "lang-painless": """grant {
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
""",
    # mustache.java reflects over the objects it renders.
    "lang-mustache": """grant {
  permission java.lang.RuntimePermission "accessDeclaredMembers";
};
""",
}
# Written into MARKER: a tree assembled by an older layout is rebuilt.
LAYOUT = "modules=" + ",".join(MODULES) + ";security=1"


def cache_dir() -> Path:
    env = os.environ.get("MODELSCRIBE_OS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "modelscribe" / "opensearch"


def has_security(tree: Path) -> bool:
    return (tree / "plugins" / SECURITY_PLUGIN / "plugin-descriptor.properties").exists()


# ------------------------------------------------------------- distribution

def fetch_distribution(version: str) -> Path:
    """Return the assembled tree for `version`, downloading what is missing."""
    cache = cache_dir()
    target = cache / f"opensearch-{version}"

    def build(tree: Path) -> None:
        zip_path, jars, security = _download_all(version, cache / f"downloads-{version}")
        t0 = time.monotonic()
        _unzip(zip_path, tree.parent)
        if not tree.is_dir():
            raise HarnessError(f"{zip_path.name} has no top-level {target.name}/ directory")
        _assemble_modules(tree, version, jars)
        if security is not None:
            _unzip(security, tree / "plugins" / SECURITY_PLUGIN)
        (tree / MARKER).write_text(LAYOUT + "\n")
        (tree / MARKER).chmod(0o644)
        log.info("assembled %s in %.1fs (security plugin: %s)", target.name,
                 time.monotonic() - t0, "yes" if security else "not available")

    build_tree(cache, target, _complete, build)
    return target


def _complete(tree: Path) -> bool:
    try:
        return (tree / MARKER).read_text().strip() == LAYOUT
    except OSError:
        return False


def _plugin_class(jar: Path, expected: str) -> str:
    """`expected` if `jar` has it, else the one other *Plugin class of its package.

    3.x renamed the module classes (PainlessPlugin -> PainlessModulePlugin, ...).
    """
    package, _, _ = expected.rpartition(".")
    prefix = package.replace(".", "/") + "/"
    try:
        with zipfile.ZipFile(jar) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile) as err:
        raise HarnessError(f"cannot read {jar}: {err}") from err
    if prefix + expected.rpartition(".")[2] + ".class" in names:
        return expected
    found = [n[:-6].replace("/", ".") for n in names if n.startswith(prefix)
             and "/" not in n[len(prefix):] and n.endswith("Plugin.class") and "$" not in n]
    if len(found) != 1:
        raise HarnessError(f"{jar.name}: no plugin class {expected} and {len(found)} other "
                           f"candidates in {package}: {found}")
    return found[0]


def _assemble_modules(tree: Path, version: str, jars: list[Path]) -> None:
    placed: set[Path] = set()
    for name, (classname, extended, artifact, prefixes) in MODULES.items():
        module = tree / "modules" / name
        module.mkdir(parents=True)
        for jar in jars:
            if jar.name.startswith(prefixes):
                shutil.copy(jar, module / jar.name)
                placed.add(jar)
        main = sorted(module.glob(f"{artifact}-*.jar"))
        if not main:
            raise HarnessError(f"module {name}: no {artifact}-{version}.jar among the downloads")
        classname = _plugin_class(main[0], classname)
        (module / "plugin-descriptor.properties").write_text(
            f"description={name} module (assembled from Maven jars by modelscribe)\n"
            f"version={version}\nname={name}\nclassname={classname}\n"
            f"java.version=11\nopensearch.version={version}\ncustom.foldername=\n"
            f"extended.plugins={extended}\nhas.native.controller=false\n")
        if name in POLICIES:
            (module / "plugin-security.policy").write_text(POLICIES[name])
        for path in [module, *module.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    unplaced = sorted(j.name for j in jars if j not in placed)
    if unplaced:
        raise HarnessError("jars pulled in by the module poms that no module owns (update "
                           f"MODULES in {Path(__file__).name}): {', '.join(unplaced)}")


# ------------------------------------------------------------- downloads

def _mvn(args: list[str], what: str, cwd: Path | None = None) -> None:
    mvn(args, what, "OpenSearch", cwd)


def _pom(version: str) -> str:
    # The module poms depend on the server jar (org.opensearch:opensearch),
    # which the zip already ships in lib/: excluded, with everything it drags in.
    deps = "".join(
        f"<dependency><groupId>org.opensearch.plugin</groupId><artifactId>{artifact}"
        f"</artifactId><version>{version}</version><exclusions><exclusion>"
        f"<groupId>org.opensearch</groupId><artifactId>opensearch</artifactId>"
        f"</exclusion></exclusions></dependency>"
        for _c, _e, artifact, _p in MODULES.values())
    return ('<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0'
            '</modelVersion><groupId>modelscribe</groupId><artifactId>opensearch-modules'
            f'</artifactId><version>{version}</version><dependencies>{deps}</dependencies>'
            '</project>\n')


def _download_all(version: str, downloads: Path) -> tuple[Path, list[Path], Path | None]:
    """(distribution zip, module jars, security plugin zip or None), cached in `downloads`."""
    downloads.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    zip_path = downloads / f"opensearch-{version}.zip"
    if not zip_path.exists():
        artifact = f"org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip"
        log.info("fetching %s with mvn", artifact)
        _mvn(["dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={downloads}"],
             artifact)
    jar_dir = downloads / "modules"
    pom = _pom(version)
    done = jar_dir / ".done"  # holds the pom it was made from
    if not done.exists() or done.read_text() != pom:
        shutil.rmtree(jar_dir, ignore_errors=True)
        with tempfile.TemporaryDirectory() as build:
            Path(build, "pom.xml").write_text(pom)
            log.info("fetching the %s %s jars", ", ".join(MODULES), version)
            _mvn(["dependency:copy-dependencies", f"-DoutputDirectory={jar_dir}"],
                 f"the OpenSearch {version} module jars", cwd=Path(build))
        done.write_text(pom)
    security: Path | None = downloads / f"{SECURITY_PLUGIN}-{version}.0.zip"
    missing = downloads / f"{SECURITY_PLUGIN}-{version}.0.missing"
    if not security.exists() and not missing.exists():
        artifact = f"org.opensearch.plugin:{SECURITY_PLUGIN}:{version}.0:zip"
        log.info("fetching %s with mvn", artifact)
        try:
            _mvn(["dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={downloads}"],
                 artifact)
        except HarnessError as err:
            # Remembered, so that later fetches stay offline; delete the file to retry.
            missing.write_text(str(err))
            log.warning("the security plugin is not available for %s: %s", version,
                        str(err).splitlines()[0])
    if not security.exists():
        security = None
    log.info("downloads for OpenSearch %s ready in %.1fs", version, time.monotonic() - t0)
    return zip_path, sorted(jar_dir.glob("*.jar")), security


# ------------------------------------------------------------- JDK

def java_range(version: str) -> tuple[int, int]:
    """Java majors (lowest, highest) a given OpenSearch version runs on."""
    # 2.x installs the Java security manager, which Java 24 removed; 3.x dropped it.
    return (11, 23) if _major(version) < 3 else (21, 99)


def find_java_home(version: str) -> Path:
    low, high = java_range(version)
    return newest_jdk("OpenSearch", version, "OPENSEARCH_JAVA_HOME",
                      lambda java: low <= java <= high, f"Java {low}..{high}")

"""Obtaining an Elasticsearch distribution for the local test harness.

Used by elasticsearch_local.py (which re-exports ``fetch_distribution``,
``find_java_home``, ``cache_dir`` and ``HarnessError``); no node is started
here.

What it guarantees:

* ``find_java_home(version)`` returns ``$ES_JAVA_HOME`` if set (it must have
  ``bin/java``), else the newest JDK under /usr/lib/jvm whose ``release``
  file says Java >= MIN_JAVA for that major version (17 for 8.x, 21 for
  9.x); otherwise it raises HarnessError listing the JDKs it saw.
* ``fetch_distribution(version, java_home)`` returns
  ``<cache>/elasticsearch-<version>``, where ``<cache>`` is
  ``$MODELSCRIBE_ES_CACHE`` (default ``~/.cache/modelscribe/elasticsearch``,
  created with its parents when missing, e.g. on a fresh machine).  The
  integ-test zip is fetched from Maven Central with ``mvn dependency:copy``
  into ``<cache>/elasticsearch-<version>.zip`` once per version and kept.
* Unpacking is atomic: the zip is extracted and the shim plugin built in a
  ``<cache>/.unpack-*`` dir that is then renamed into place, so the tree
  exists only complete (the shim's ``named_components.json`` is the marker);
  leftovers of an interrupted unpack are removed by the next fetch.  Unix
  modes are restored (``bin/*`` executable, all readable), so an
  unprivileged node user can run the shared tree, which is never written to
  after the rename.  An exclusive ``flock`` on ``<cache>/.lock`` lets only one
  process (parallel CI jobs, CLI plus pytest) fetch or unpack at a time.
* The shim plugin (``plugins/modelscribe-analysis-shim``) exists because the
  integ-test zip lacks the analysis-common module, yet the ``.security``
  index (API keys, native users) is created with an analyzer that uses its
  ``uax_url_email`` tokenizer and ``pattern_capture`` and ``unique`` token
  filters.  Without them the ``.security`` index cannot be created and
  creating an API key fails with ``Unknown filter type [pattern_capture]``.
  The shim is a stable-API analysis plugin providing those three components
  on top of Lucene classes the distribution already ships; it is compiled
  with ``javac`` from the chosen JDK (so that must be a full JDK), once per
  cached version.
* Failures (no fitting JDK, no ``mvn``, download error, compile error) raise
  HarnessError saying what was looked for, with the tool's output if any.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

# A child of elasticsearch_local's logger: same output, same filtering.
log = logging.getLogger("elasticsearch_local.dist")

JVM_ROOT = Path("/usr/lib/jvm")
# Minimum Java major version per Elasticsearch major version.
MIN_JAVA = {8: 17, 9: 21}


class HarnessError(RuntimeError):
    """The node could not be fetched, configured, started or stopped."""


def cache_dir() -> Path:
    env = os.environ.get("MODELSCRIBE_ES_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "modelscribe" / "elasticsearch"


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


# ------------------------------------------------------------- distribution

def fetch_distribution(version: str, java_home: Path) -> Path:
    """Return the unpacked distribution for `version` (with the shim plugin), fetching it if needed."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"elasticsearch-{version}"
    complete = target / "plugins" / SHIM_NAME / "named_components.json"
    if complete.exists():
        return target
    # One fetcher at a time per cache (parallel CI jobs, CLI + pytest).
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():
            return target
        # Leftovers of an interrupted unpack or of an older, shim-less harness.
        for stale in [target, *cache.glob(".unpack-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        archive = cache / f"elasticsearch-{version}.zip"
        if not archive.exists():
            _download(version, cache)
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
        try:
            _unzip(archive, tmp)
            _build_shim(tmp / target.name, version, java_home)
            # rename is atomic: a crash leaves only a .unpack-* dir to clean up.
            (tmp / target.name).rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("unpacked %s and built the shim plugin in %.1fs", archive.name,
                 time.monotonic() - t0)
    return target


# ------------------------------------------------------------- shim plugin

# The integ-test zip lacks the analysis-common module, yet the .security index
# (API keys, native users) is created with an "email" analyzer made of
# uax_url_email + pattern_capture + lowercase + unique; without them creating
# an API key fails with "Unknown filter type [pattern_capture]".  This stable
# (version-independent API) analysis plugin provides the three missing
# components on top of Lucene classes the distribution already ships.  It is
# compiled once per cached version, with the JDK chosen for that version.
SHIM_NAME = "modelscribe-analysis-shim"
SHIM_SOURCE = """\
package modelscribe.esshim;

import java.io.IOException;
import java.util.List;
import java.util.regex.Pattern;
import org.apache.lucene.analysis.*;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.elasticsearch.plugin.*;
import org.elasticsearch.plugin.analysis.TokenFilterFactory;  // not Lucene's namesake
import org.elasticsearch.plugin.analysis.TokenizerFactory;
import org.elasticsearch.plugin.settings.*;

public final class Shim {
    @AnalysisSettings
    public interface CaptureSettings {
        @ListSetting(path = "patterns") List<String> patterns();
        @BooleanSetting(path = "preserve_original", defaultValue = true) boolean preserveOriginal();
    }

    @NamedComponent("pattern_capture")
    public static final class PatternCapture implements TokenFilterFactory {
        private final Pattern[] patterns;
        private final boolean preserveOriginal;

        @Inject
        public PatternCapture(CaptureSettings settings) {
            patterns = settings.patterns().stream().map(Pattern::compile).toArray(Pattern[]::new);
            preserveOriginal = settings.preserveOriginal();
        }

        public TokenStream create(TokenStream in) {
            return new PatternCaptureGroupTokenFilter(in, preserveOriginal, patterns);
        }
    }

    @NamedComponent("uax_url_email")
    public static final class UaxUrlEmail implements TokenizerFactory {
        public Tokenizer create() { return new UAX29URLEmailTokenizer(); }
    }

    /** Drops tokens whose term already occurred in the stream, like "unique". */
    @NamedComponent("unique")
    public static final class Unique implements TokenFilterFactory {
        public TokenStream create(TokenStream in) {
            return new TokenFilter(in) {
                private final CharTermAttribute term = addAttribute(CharTermAttribute.class);
                private final CharArraySet seen = new CharArraySet(8, false);

                public boolean incrementToken() throws IOException {
                    while (input.incrementToken()) {
                        if (seen.add(term.toString())) return true;
                    }
                    return false;
                }

                public void reset() throws IOException {
                    super.reset();
                    seen.clear();
                }
            };
        }
    }
}
"""
SHIM_COMPONENTS = {
    "org.elasticsearch.plugin.analysis.TokenFilterFactory": {
        "pattern_capture": "modelscribe.esshim.Shim$PatternCapture",
        "unique": "modelscribe.esshim.Shim$Unique"},
    "org.elasticsearch.plugin.analysis.TokenizerFactory": {
        "uax_url_email": "modelscribe.esshim.Shim$UaxUrlEmail"},
}


def _build_shim(dist: Path, version: str, java_home: Path) -> None:
    javac = java_home / "bin" / "javac"
    if not javac.exists():
        raise HarnessError(f"{javac} not found: a full JDK is needed to build {SHIM_NAME}")
    release = str(MIN_JAVA.get(_major(version), 21))
    lib = dist / "lib"
    classpath = [next(lib.glob(pattern)) for pattern in (
        "elasticsearch-plugin-api-*.jar", "elasticsearch-plugin-analysis-api-*.jar",
        "lucene-core-*.jar", "lucene-analysis-common-*.jar")]
    with tempfile.TemporaryDirectory() as build:
        source = Path(build, "Shim.java")
        source.write_text(SHIM_SOURCE)
        proc = subprocess.run(
            [str(javac), "--release", release, "-cp", os.pathsep.join(map(str, classpath)),
             "-d", str(Path(build, "classes")), str(source)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0:
            raise HarnessError(f"building {SHIM_NAME} failed:\n{proc.stdout}{proc.stderr}")
        plugin = dist / "plugins" / SHIM_NAME
        plugin.mkdir(parents=True)
        with zipfile.ZipFile(plugin / f"{SHIM_NAME}.jar", "w") as jar:
            for cls in sorted(Path(build, "classes").rglob("*.class")):
                jar.write(cls, cls.relative_to(Path(build, "classes")).as_posix())
    (plugin / "stable-plugin-descriptor.properties").write_text(
        f"name={SHIM_NAME}\ndescription=analysis-common components the security index needs\n"
        f"version=1.0\nelasticsearch.version={version}\njava.version={release}\n")
    (plugin / "named_components.json").write_text(json.dumps(SHIM_COMPONENTS))
    for path in [plugin, *plugin.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)


# ------------------------------------------------------------- download + unpack

def _download(version: str, cache: Path) -> None:
    if shutil.which("mvn") is None:
        raise HarnessError("`mvn` not found on PATH: it is needed to fetch Elasticsearch")
    artifact = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
    log.info("fetching %s with mvn", artifact)
    t0 = time.monotonic()
    proc = subprocess.run(
        ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={artifact}",
         f"-DoutputDirectory={cache}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )
    if proc.returncode != 0 or not (cache / f"elasticsearch-{version}.zip").exists():
        raise HarnessError(f"mvn could not fetch {artifact}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    log.info("fetched %s in %.1fs", artifact, time.monotonic() - t0)


def _unzip(archive: Path, dest: Path) -> None:
    # zipfile drops Unix modes; restore them so bin/* stay executable and the
    # tree is readable by the unprivileged node user.
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if info.is_dir():
                mode = 0o755
            elif not mode:
                mode = 0o644
            path.chmod(mode)


# ------------------------------------------------------------- JDK

def _java_major(java_home: Path) -> int | None:
    try:
        text = (java_home / "release").read_text()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="([0-9._]+)', text, re.M)
    if not match:
        return None
    parts = match.group(1).split(".")
    return int(parts[1]) if parts[0] == "1" else int(parts[0])  # "1.8.0" -> 8


def find_java_home(version: str) -> Path:
    """ES_JAVA_HOME if set, else the newest JDK under /usr/lib/jvm fit for `version`."""
    env = os.environ.get("ES_JAVA_HOME")
    if env:
        if not (Path(env) / "bin" / "java").exists():
            raise HarnessError(f"ES_JAVA_HOME={env} has no bin/java")
        return Path(env)
    need = MIN_JAVA.get(_major(version), 21)
    found: dict[Path, int] = {}
    for home in sorted(JVM_ROOT.glob("*")) if JVM_ROOT.is_dir() else []:
        home = home.resolve()
        major = _java_major(home)
        if major is not None and (home / "bin" / "java").exists():
            found[home] = major
    fit = [h for h, m in found.items() if m >= need]
    if not fit:
        seen = ", ".join(f"{h} (Java {m})" for h, m in found.items()) or "none"
        raise HarnessError(
            f"Elasticsearch {version} needs Java >= {need}: looked for a JDK under {JVM_ROOT}/* "
            f"whose `release` file has JAVA_VERSION >= {need}; found: {seen}. Set ES_JAVA_HOME.")
    return max(fit, key=lambda h: found[h])

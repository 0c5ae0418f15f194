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

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# Maven, unzip, the atomic cache tree and the JDK search are shared with
# opensearch_dist (node_dist.py, next to this file).
try:
    import node_dist  # noqa: F401
except ModuleNotFoundError:  # loaded by file path, without scripts/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_dist import HarnessError, build_tree, major as _major, mvn, newest_jdk, unzip  # noqa: E402

# A child of elasticsearch_local's logger: same output, same filtering.
log = logging.getLogger("elasticsearch_local.dist")

# Minimum Java major version per Elasticsearch major version.
MIN_JAVA = {8: 17, 9: 21}


def cache_dir() -> Path:
    env = os.environ.get("MODELSCRIBE_ES_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "modelscribe" / "elasticsearch"


# ------------------------------------------------------------- distribution

def fetch_distribution(version: str, java_home: Path) -> Path:
    """Return the unpacked distribution for `version` (with the shim plugin), fetching it if needed."""
    cache = cache_dir()
    target = cache / f"elasticsearch-{version}"

    def complete(tree: Path) -> bool:
        return (tree / "plugins" / SHIM_NAME / "named_components.json").exists()

    def build(tree: Path) -> None:
        archive = cache / f"elasticsearch-{version}.zip"
        if not archive.exists():
            _download(version, cache)
        t0 = time.monotonic()
        unzip(archive, tree.parent)
        _build_shim(tree, version, java_home)
        log.info("unpacked %s and built the shim plugin in %.1fs", archive.name,
                 time.monotonic() - t0)

    build_tree(cache, target, complete, build)
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


# ------------------------------------------------------------- download + JDK

def _download(version: str, cache: Path) -> None:
    artifact = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
    log.info("fetching %s with mvn", artifact)
    t0 = time.monotonic()
    mvn(["dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={cache}"], artifact,
        "Elasticsearch")
    if not (cache / f"elasticsearch-{version}.zip").exists():
        raise HarnessError(f"mvn could not fetch {artifact}: no {cache}/elasticsearch-{version}.zip")
    log.info("fetched %s in %.1fs", artifact, time.monotonic() - t0)


def find_java_home(version: str) -> Path:
    """ES_JAVA_HOME if set, else the newest JDK under /usr/lib/jvm fit for `version`."""
    need = MIN_JAVA.get(_major(version), 21)
    return newest_jdk("Elasticsearch", version, "ES_JAVA_HOME", lambda java: java >= need,
                      f"Java >= {need}")

"""The settings object of each stage, built from a Config, and the stages'
own validation run at resolution time.

A stage decides what it accepts (``agent.transforms.validate``,
``agent.parsing.validate_settings``, the spool's minimum size); the config
layer calls those validators once, while resolving, so ``check config``
rejects exactly what ``run`` would, and turns their ``ValueError`` into a
``ConfigError`` that names where the value came from: the flag
(``--redact-pattern``), the variable (``MODELSCRIBE_REDACT_PATTERN``) or the
file key (``/etc/modelscribe.yaml: redact_patterns``).

The outputs' files are checked the way the outputs will open them: the
``file:`` output and the dead-letter file can be written, the CA bundle and
the client certificate load as PEM (an encrypted key is refused: the output
has no password to give it); a client certificate out of its validity
dates is logged as a warning (a node that checks it refuses the connection,
and run starts anyway, as with any output it cannot reach yet).

The stages' messages start with the flag (transforms) or the settings field
(parsing) they are about; ``relabel`` swaps that name for the place the value
really came from. Nothing here has side effects but warnings about settings
that are valid yet probably not what was meant, logged at every resolution
(``run``, ``check config``, a reload): a glob that reaches the agent's own
files (``own_files``: never tailed), two ``inputs:`` whose globs can
match the same file with different settings (the first one applies), and a
client certificate that has expired or is not valid yet. The
hash key that ``run`` creates in the state directory is stood in for by a
placeholder.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
import stat
import tempfile
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Mapping

from agent.errors import ConfigError
from agent.selflog import Secret, get_logger

if TYPE_CHECKING:
    from agent.parsing.settings import ParseSettings
    from agent.sources.discovery import OwnPattern
    from agent.transforms import TransformSettings

# A resolved agent.config.resolve.Config. Not imported, even for type
# checking: resolve imports this module, and dependencies go one way.
Config = Any

log = get_logger("config")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Stands in for STATE_DIR/hash_key, which run creates (or reads) on start-up.
_PLACEHOLDER_KEY = Secret("0" * 64)


def transform_settings(config: Config, hash_key: Secret | None = None) -> TransformSettings:
    """The enrichment stage's settings (``hash_key``: the key to use when the
    Config has none, e.g. the one of the state directory)."""
    from agent.transforms import TransformSettings

    return TransformSettings(
        fields=config.fields, labels=config.labels, service_name=config.service_name,
        model_from_path=config.model_from_path, kubernetes_paths=config.kubernetes_paths,
        host_metadata=config.host_metadata, keep_payloads=config.keep_payloads,
        redact_fields=config.redact_fields, redact_patterns=config.redact_patterns,
        redact_defaults=config.redact_defaults, hash_fields=config.hash_fields,
        hash_key=config.hash_key or hash_key, sample_rate=config.sample,
        max_field_bytes=config.max_field_bytes)


def parse_settings(config: Config) -> ParseSettings:
    """The parsing stage's settings: every ParseSettings field the Config has
    under the same name (``tests/config`` checks this agrees with the
    daemon's ``pipeline.parse_settings``)."""
    from agent.parsing.settings import ParseSettings

    present = {f.name for f in fields(config)}
    return ParseSettings(**{f.name: getattr(config, f.name) for f in fields(ParseSettings)
                            if f.name in present})


def own_files(config: Config) -> tuple[OwnPattern, ...]:
    """The agent's own directories and files, as the excludes tailing always
    adds to ``--exclude``: the state directory (registry, cut log, status,
    agent id, hash key, health state and, by default, the spool and the dead
    letters), the spool directory, the dead-letter file and the ``file:``
    output. Shipping them would feed the agent what it writes, growing
    without bound (a rejected line is dead-lettered, read, rejected again, one
    level deeper each time), as Filebeat never reads its own registry. Each
    is given as written and, when a symlink makes it differ, as resolved."""
    from agent.sources.discovery import OwnPattern

    given = [(config.state_dir, "the state directory", True)]
    if config.spool:
        given.append((config.spool_path, "the spool directory", True))
    given.append((config.dead_letter_path, "the dead-letter file", False))
    if config.output.startswith("file:"):
        given.append((config.output[5:], "the file output", False))
    own: list[OwnPattern] = []
    for path, what, directory in given:
        pattern = OwnPattern(path, what, directory)
        if any(other.directory and other.holds(pattern.root) for other in own):
            continue  # in the state directory: left out with it
        own.append(pattern)
        if pattern.root != pattern.path:
            own.append(OwnPattern(pattern.root, what, directory))
    return tuple(own)


def tail_excludes(config: Config) -> tuple[str, ...]:
    """What tailing leaves out: ``--exclude``, and the agent's own files."""
    return config.excludes + own_files(config)


def relabel(message: str, where: Mapping[str, str], by_flag: Mapping[str, str]) -> str:
    """``message`` with every ``--flag`` in it replaced by where that option's
    value came from (``where``: option name -> label; ``by_flag``: flag ->
    option name). Flags given on the command line stay as they are."""
    def swap(match: re.Match[str]) -> str:
        name = by_flag.get(match.group(0))
        return where.get(name, match.group(0)) if name else match.group(0)
    return _FLAG.sub(swap, message)


def check(config: Config, where: Mapping[str, str]) -> None:
    """Run each stage's own validation on ``config``; ConfigError on the first problem."""
    from agent.config.options import OPTIONS

    by_flag = {option.flag: option.name for option in OPTIONS}
    _check_transforms(config, where, by_flag)
    settings = _check_parsing(config, where)
    for number, spec in enumerate(config.inputs, 1):
        check_input(spec, settings, f"{config.config_file}: inputs[{number}]")
    _check_spool(config, where)
    _check_output_files(config, where)
    _check_parse_at(config, where)
    _check_health(config)
    _warn_own_files(config, where)
    _warn_overlapping_inputs(config)


def _globs(config: Config, where: Mapping[str, str]) -> list[tuple[str, str]]:
    """(how messages name it, glob) of every glob to tail."""
    named = [(where.get("paths", "--path"), pattern) for pattern in config.paths]
    return named + [(f"{config.config_file}: inputs[{number}]", pattern)
                    for number, spec in enumerate(config.inputs, 1) for pattern in spec.paths]


def _warn_own_files(config: Config, where: Mapping[str, str]) -> None:
    """One warning per glob that reaches the agent's own files (which
    tailing leaves out whatever the globs say), unless ``--exclude`` already
    leaves them out. Decided on the globs' text (``below``), so a file the
    agent has not written yet counts too."""
    from agent.sources.discovery import Discovery
    from agent.sources.globs import base_dir, below, translate

    user = Discovery((), config.excludes)
    own = [pattern for pattern in own_files(config)
           if not user.excluded(os.path.join(pattern.path, "x") if pattern.directory else pattern.path)]
    for label, pattern in _globs(config, where):
        glob = os.path.normpath(pattern)
        reached: dict[str, OwnPattern] = {}  # each named once: as written if the glob reaches it so
        for item in own:
            if below(glob, item.path) if item.directory else translate(glob).match(item.path):
                reached.setdefault(item.what, item)
        if not reached:
            continue
        covers = ", ".join(f"{item.what} {item.path}" for item in reached.values())
        home = base_dir(glob)[0]
        if any((home == item.path or home.startswith(item.path.rstrip("/") + "/")) if item.directory
               else glob == item.path for item in reached.values()):
            log.warning(f"{label} {pattern} matches only the agent's own files; none of them is tailed "
                        "(keep the logs to ship outside it)", covers=covers)
        else:
            log.warning(f"{label} {pattern} also reaches the agent's own files; they are never tailed",
                        covers=covers)


def _warn_overlapping_inputs(config: Config) -> None:
    """Two ``inputs:`` whose globs can match the same file (``overlap``, on
    the globs' text) with different parse settings: such a file is read once,
    with the settings of the first. The reader names each such file when it
    opens it (``agent.sink``)."""
    from agent.sources.globs import overlap

    settings = parse_settings(config)
    applied = [spec.apply(settings) for spec in config.inputs]
    for first, spec in enumerate(config.inputs):
        for second in range(first + 1, len(config.inputs)):
            differ = [f.name for f in fields(applied[first])
                      if getattr(applied[first], f.name) != getattr(applied[second], f.name)]
            if differ and any(overlap(os.path.normpath(a), os.path.normpath(b))
                              for a in spec.paths for b in config.inputs[second].paths):
                log.warning(f"{config.config_file}: inputs[{first + 1}] and inputs[{second + 1}] can match the "
                            f"same file with different settings; such a file is read once, with the settings "
                            f"of inputs[{first + 1}] (the first that matches)", differ=",".join(differ))


def _check_health(config: Config) -> None:
    """The health reference file is read now, as the engine reads it at start-up."""
    if config.health is not None:
        from agent.health.config import check_reference

        check_reference(config.health, f"{config.config_file}: health.reference")


def _check_transforms(config: Config, where: Mapping[str, str], by_flag: Mapping[str, str]) -> None:
    from agent.transforms import validate

    try:
        validate(transform_settings(config, _PLACEHOLDER_KEY))
    except ValueError as error:
        raise ConfigError(relabel(str(error), where, by_flag)) from None
    _check_pattern_names(config, where)


def _check_pattern_names(config: Config, where: Mapping[str, str]) -> None:
    """A --redact-pattern that is a plain word close to a built-in name
    (``emial``, ``Email``, ``cards``) is a typo far more often than a regex
    meant to redact that one word: refused with a did-you-mean, and the way
    to write the word as a regex."""
    import difflib

    from agent.transforms.patterns import BUILTINS

    for spec in config.redact_patterns:
        if spec in BUILTINS or not re.fullmatch(r"[A-Za-z_-]+", spec):
            continue
        close = difflib.get_close_matches(spec.lower().replace("-", "_"), list(BUILTINS), n=1, cutoff=0.75)
        if close:
            raise ConfigError(f"{where['redact_patterns']} {spec!r}: not a built-in pattern (did you mean "
                              f"{close[0]!r}?); to redact the word {spec!r} itself, write the regex (?:{spec})")


def _check_parsing(config: Config, where: Mapping[str, str]) -> ParseSettings:
    from agent.parsing import validate_settings

    settings = parse_settings(config)
    try:
        validate_settings(settings)
    except ValueError as error:
        key, rest = _split_key(str(error), [f.name for f in fields(settings)])
        raise ConfigError(f"{where.get(key, key)}: {rest}" if key else str(error)) from None
    return settings


def check_input(spec: object, settings: ParseSettings, label: str) -> None:
    """Validate the parse settings one ``inputs:`` entry gives its files
    (``spec.apply(settings)``); the error names ``FILE: inputs[N].KEY``."""
    from agent.parsing import validate_settings

    applied = spec.apply(settings)  # type: ignore[attr-defined]
    try:
        validate_settings(applied)
    except ValueError as error:
        key, rest = _split_key(str(error), [f.name for f in fields(applied)])
        written = getattr(spec, "keys", {}).get(key, key)
        raise ConfigError(f"{label}.{written}: {rest}" if key else f"{label}: {error}") from None


def _check_parse_at(config: Config, where: Mapping[str, str]) -> None:
    """--redact-field and --hash-field act on parsed fields: with --parse-at
    elasticsearch the field is not there yet and its value leaves the host
    inside the raw line. Refused, so nothing meant to be redacted or hashed
    reaches the cluster (pattern redaction works on the raw text and stays)."""
    rules = [name for name in ("redact_fields", "hash_fields") if getattr(config, name)]
    if not rules:
        return
    raw = [where.get("parse_at", "--parse-at")] if config.parse_at == "elasticsearch" else []
    raw += [f"{config.config_file}: inputs[{number}].{getattr(spec, 'keys', {}).get('parse_at', 'parse_at')}"
            for number, spec in enumerate(config.inputs, 1) if getattr(spec, "parse_at", None) == "elasticsearch"]
    if raw:
        given = " and ".join(where.get(name, name) for name in rules)
        verb = "acts" if len(rules) == 1 else "act"
        raise ConfigError(f"{given} {verb} on parsed fields, but {', '.join(raw)} ships the raw line for the cluster "
                          "to parse: the value would leave this host inside it. Use --redact-pattern (it "
                          "applies to the raw text), or --parse-at agent for these files")


def _split_key(message: str, names: list[str]) -> tuple[str | None, str]:
    """('multiline_start', "'(' is not ...") from "multiline_start '(' is not ...".

    The message may also start with the option's singular flag stem
    (``map_field`` for ``map_fields``); the settings field name is returned.
    """
    from agent.config.options import BY_NAME

    spellings = {name: name for name in names}
    spellings.update({BY_NAME[name].singular: name for name in names
                      if name in BY_NAME and BY_NAME[name].singular})  # type: ignore[misc]
    for spelling in sorted(spellings, key=len, reverse=True):
        if message.startswith(spelling) and message[len(spelling):len(spelling) + 1] in (" ", ":"):
            return spellings[spelling], message[len(spelling):].lstrip(" :")
    return None, message


def _check_spool(config: Config, where: Mapping[str, str]) -> None:
    if not config.spool:
        return
    from agent.spool.frames import HEADER_SIZE
    from agent.spool.queue import MIN_SEGMENT_BYTES

    smallest = 2 * (HEADER_SIZE + MIN_SEGMENT_BYTES)  # what DiskQueue refuses below
    if config.spool_max_bytes < smallest:
        raise ConfigError(f"{where['spool_max_bytes']}: {config.spool_max_bytes} bytes is too small for "
                          f"the spool (at least {smallest})")
    if config.spool_dir:  # the default, STATE_DIR/spool, is checked with the state directory
        # Tried as the state directory is (access() says yes to root for /proc).
        check_state_dir(config.spool_dir, f"{where['spool_dir']} {config.spool_dir}")


def regular_file_problem(path: str) -> str | None:
    """Why ``path``, an existing file the agent reads (a key, a certificate,
    the dead letters), cannot be one: not a regular file. A FIFO would block
    the open (or the read) for ever, out of reach of SIGTERM (the interrupted
    call is retried); a directory or a device is a wrong path. None when it is
    a regular file, or does not exist (the caller's own check says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a special file")
    return f"not a regular file ({kind})"


def read_regular(path: str) -> bytes:
    """The bytes of the regular file ``path``; OSError as ``open`` raises it,
    ValueError with ``regular_file_problem``'s reason when it is not a regular
    file. Opened with O_NONBLOCK and checked again on the descriptor, so a
    FIFO put in its place after a check cannot block the open either."""
    problem = regular_file_problem(path)
    if problem is not None:
        raise ValueError(problem)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(regular_file_problem(path) or "not a regular file")
        return handle.read()


_WRITABLE_HINT = ("; make it writable for the agent's user (its owner and mode; an immutable directory: "
                  "chattr -i; a read-only file system: repair it and mount it read-write)")


def _check_directory(path: str, label: str) -> None:
    """A directory the agent creates if needed: it is one, or it can be made
    in its nearest existing parent."""
    target = os.path.abspath(path)
    if os.path.exists(target):
        if not os.path.isdir(target):
            raise ConfigError(f"{label}: exists and is not a directory")
        if not os.access(target, os.W_OK | os.X_OK):
            raise ConfigError(f"{label}: the directory is not writable{_WRITABLE_HINT}")
        return
    parent = os.path.dirname(target)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{label}: cannot be created: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{label}: cannot be created: {parent} is not writable")


def check_state_dir(path: str, label: str, create: bool = False) -> None:
    """The state directory is usable: a writable directory, or one that can be
    made in its nearest existing parent. ``check config`` and ``run`` call it
    when the settings are resolved; ``run`` then makes it (``create``, from
    agent.pipeline), failing, if it still fails, with the same kind of message
    and the same exit code (2). Each case ends with a real attempt (a file
    written and removed in the directory, or a directory made and removed in
    the parent), since access() is no proof: it says yes to root for /proc."""
    _check_directory(path, label)
    target = os.path.abspath(path)
    parent = target
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    try:
        if create:
            os.makedirs(target, mode=0o700, exist_ok=True)
        if os.path.isdir(target):
            handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=target)
            os.close(handle)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".modelscribe-check-", dir=parent))
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(f"{label}: the directory is not writable ({reason}){_WRITABLE_HINT}" if parent == target
                          else f"{label}: cannot be created in {parent} ({reason})") from None


def _check_output_files(config: Config, where: Mapping[str, str]) -> None:
    """What the outputs open later: the file output, the dead-letter file
    (outside the state directory, which run creates) and the TLS files."""
    if config.output.startswith("file:"):
        _check_writable(config.output[5:], f"{where['output']} {config.output}")
    if config.dead_letter_file and not _under(config.dead_letter_file, config.state_dir):
        _check_writable(config.dead_letter_file, f"{where['dead_letter_file']} {config.dead_letter_file}")
    _check_tls_files(config, where)


def _under(path: str, directory: str) -> bool:
    """Is ``path`` in ``directory`` (which run creates if needed)?"""
    return os.path.dirname(os.path.abspath(path)) == os.path.abspath(directory)


def _check_writable(path: str, label: str) -> None:
    """A file the agent appends to: its directory exists, and it can be
    written. Tried, not asked (access() says yes to root for /proc): an
    existing regular file is opened for appending (nothing is written, its
    times do not change); for one that does not exist yet, a file is
    created and removed in its directory."""
    target = os.path.abspath(path)
    parent = os.path.dirname(target) or "."
    if not os.path.isdir(parent):
        raise ConfigError(f"{label}: directory {parent} does not exist")
    if os.path.isdir(target):
        raise ConfigError(f"{label}: is a directory, not a file")
    if os.path.exists(target) and not os.path.isfile(target):  # a device, a FIFO: opening may block
        if not os.access(target, os.W_OK):
            raise ConfigError(f"{label}: not writable")
        return
    try:
        if os.path.exists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)))
        else:
            handle, probe = tempfile.mkstemp(prefix=".modelscribe-check-", dir=parent)
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        raise ConfigError(f"{label}: not writable ({error.strerror or error})") from None


def _check_tls_files(config: Config, where: Mapping[str, str]) -> None:
    """Load the CA bundle and the client certificate as the TLS layer will:
    a file that is not PEM, or a key that does not match, fails here and not
    at the first connection. A client certificate out of its validity dates
    is a warning (run starts anyway, as with an output it cannot reach; the
    output's check and its handshake errors name it)."""
    problem = tls_files_problem(config, where)
    if problem is not None:
        raise ConfigError(problem)
    if config.client_cert:
        dated = client_cert_dates_problem(config.client_cert, where["client_cert"])
        if dated is not None:
            log.warning(f"{dated}: a node that checks client certificates refuses it; replace the certificate "
                        "and its key (the files are read again at each new connection)")


def tls_files_problem(config: Any, where: Mapping[str, str]) -> str | None:
    """Why the TLS files of ``config`` (a Config or the output's
    ConnectionSettings) do not load as the TLS layer loads them, or None:
    the CA bundle, then the client certificate and key. Also what the output
    asks when a handshake fails, since the TLS layer reads these files again
    at each new connection and they may have changed since the start."""
    import ssl

    if not (config.ca_cert or config.client_cert):
        return None
    context = ssl.create_default_context()
    if config.ca_cert:
        try:
            context.load_verify_locations(cafile=config.ca_cert)
        except (ssl.SSLError, ValueError) as error:
            return f"{where['ca_cert']} {config.ca_cert}: not a PEM CA bundle ({error})"
        except OSError as error:
            return f"{where['ca_cert']} {config.ca_cert}: cannot be read ({error.strerror or error})"
    if config.client_cert and config.client_key:
        try:
            # No password: the output has none to give, so an encrypted key is refused here.
            context.load_cert_chain(config.client_cert, config.client_key, password=lambda: b"")
        except (ssl.SSLError, ValueError) as error:
            return _client_pair_problem(config, where, error)
        except OSError as error:  # (OpenSSL's errno, with no file name: which one is found again)
            for name in ("client_cert", "client_key"):
                try:
                    open(getattr(config, name), "rb").close()
                except OSError as unread:
                    error = unread
                    break
            return f"{where[name]} {getattr(config, name)}: cannot be read ({error.strerror or error})"
    return None


def client_cert_dates(path: str) -> tuple[datetime.datetime, datetime.datetime] | None:
    """(notBefore, notAfter), in UTC, of the first PEM certificate in ``path``;
    None when it cannot be read or parsed (the load above says why). A small
    DER walk: the agent has no X.509 library, and ssl has no public way to
    read a certificate that is not a peer's."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(1 << 20)
        begin = text.index(b"-----BEGIN CERTIFICATE-----") + 27
        der = base64.b64decode(b"".join(text[begin:text.index(b"-----END CERTIFICATE-----", begin)].split()))

        def element(pos: int) -> tuple[int, int, int]:  # (tag, start of content, end)
            length, start = der[pos + 1], pos + 2
            if length & 0x80:
                count = length & 0x7F
                length, start = int.from_bytes(der[pos + 2:pos + 2 + count], "big"), pos + 2 + count
            return der[pos], start, start + length

        _, cert, _ = element(0)  # Certificate ::= SEQUENCE { tbsCertificate, ... }
        _, pos, _ = element(cert)  # TBSCertificate ::= SEQUENCE { [0] version?, serial, signature, issuer, validity
        if der[pos] == 0xA0:
            pos = element(pos)[2]
        for _ in range(3):  # serialNumber, signature, issuer
            pos = element(pos)[2]
        _, pos, _ = element(pos)  # Validity ::= SEQUENCE { notBefore Time, notAfter Time }
        times = []
        for _ in range(2):
            tag, start, end = element(pos)
            value = der[start:end].decode("ascii").rstrip("Z")
            if tag == 0x17:  # UTCTime YYMMDDHHMMSS: years 50-99 are 19xx (RFC 5280)
                value = ("19" if int(value[:2]) >= 50 else "20") + value
            times.append(datetime.datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc))
            pos = end
        return times[0], times[1]
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None


def client_cert_dates_problem(path: str, flag: str, now: datetime.datetime | None = None) -> str | None:
    """``FLAG PATH: expired on DATE UTC`` (or ``not valid before``) when the
    certificate in ``path`` is out of its validity dates at ``now``, else None."""
    dates = client_cert_dates(path)
    if dates is None:
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now > dates[1]:
        return f"{flag} {path}: expired on {dates[1]:%Y-%m-%d %H:%M} UTC"
    if now < dates[0]:
        return f"{flag} {path}: not valid before {dates[0]:%Y-%m-%d %H:%M} UTC"
    return None


def _client_pair_problem(config: Config, where: Mapping[str, str], error: Exception) -> str:
    """Why the client certificate and key did not load, from what the files hold
    (OpenSSL says "PEM lib" for most of it)."""
    def head(path: str) -> bytes:
        try:
            with open(path, "rb") as handle:
                return handle.read(1 << 16)
        except OSError:
            return b""

    cert, key = head(config.client_cert or ""), head(config.client_key or "")
    cert_flag, key_flag = f"{where['client_cert']} {config.client_cert}", f"{where['client_key']} {config.client_key}"
    if b"ENCRYPTED" in key:
        return (f"{key_flag}: the key is encrypted (it needs a passphrase, which the agent cannot give); "
                f"write it unencrypted, e.g. openssl pkey -in {config.client_key} -out NEW.key, mode 0600")
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        swapped = " (it holds a private key: are the two flags swapped?)" if b"PRIVATE KEY-----" in cert else ""
        return f"{cert_flag}: holds no PEM certificate (-----BEGIN CERTIFICATE-----){swapped}"
    if b"PRIVATE KEY-----" not in key:
        swapped = " (it holds a certificate: are the two flags swapped?)" if b"CERTIFICATE-----" in key else ""
        return f"{key_flag}: holds no PEM private key (-----BEGIN PRIVATE KEY-----){swapped}"
    if any(reason in str(error).upper() for reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED")):
        # (NO_CERTIFICATE_ASSIGNED: a key of another type, EC for an RSA certificate or the reverse)
        return f"{key_flag}: is not the key of the certificate in {config.client_cert}"
    return f"{cert_flag} and {key_flag}: not a PEM certificate and its key ({error})"

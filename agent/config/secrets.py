"""The secrets of the configuration: the API key, the basic-auth password
and the hash key, read from their file (``--api-key-file``...), their
variable (``MODELSCRIBE_API_KEY``...) or systemd's credentials, held as
``Secret``, and checked for what they go into: the value never appears in a
message, which names where it came from and what is wrong with it."""

from __future__ import annotations

import os
from typing import Any, Mapping

from agent.config.options import BY_NAME, SECRET_ENV
from agent.config.stages import read_regular, regular_file_problem
from agent.errors import ConfigError
from agent.selflog import Secret


def _read_file(path: str, where: str) -> Secret:
    try:
        content = read_regular(path)  # a FIFO must not hang the command (nor SIGTERM: the open is retried)
    except ValueError as error:
        raise ConfigError(f"{where} {path}: {error}; give the file that holds the value") from None
    except OSError as error:
        raise ConfigError(f"{where} {path}: cannot read the file: {error.strerror}") from error
    try:
        value = content.decode("utf-8").strip()
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where} {path}: the file is not UTF-8 text") from error
    if not value:
        raise ConfigError(f"{where} {path}: the file is empty")
    return Secret(value)


# What each secret goes into: the API key into an HTTP header as it is (one
# line of printable ASCII, or the header cannot be sent); the password into
# base64 (any text, but a line break or control character is a pasting
# mistake); the hash key into an HMAC (any text).
_KEY_RULE = "the API key must be one line of printable ASCII (an API key is base64 text)"
_PASSWORD_RULE = "the password must be one line without control characters"


def check_secret(name: str, secret: Secret, where: str) -> None:
    """ConfigError naming ``where`` when ``secret`` cannot be used; the value is never shown."""
    if name == "hash_key":
        return
    value = secret.reveal()
    found = ("a line break" if any(c in value for c in "\r\n") else
             "a control character" if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value) else
             "a non-ASCII character" if name == "api_key" and not value.isascii() else None)
    if found:
        raise ConfigError(f"{where}: {_KEY_RULE if name == 'api_key' else _PASSWORD_RULE}; it holds {found} "
                          "(the value is not shown)")


def read_secrets(chosen: dict[str, Any], env: Mapping[str, str], origins: dict[str, str],
                  where: dict[str, str]) -> dict[str, Any]:
    """Each secret from where the precedence flag > environment > file >
    default puts it: a key file named by a flag (``--api-key-file``) or its
    variable (``MODELSCRIBE_API_KEY_FILE``) first, then the variable holding
    the value (``MODELSCRIBE_API_KEY``), then a key file the config file
    names (``api_key_file:``), then systemd's credentials. A config file's key
    file that the variable overrides is set aside (``chosen`` and ``origins``
    say so): the output re-reads a key file when it changes, and must not
    switch to it."""
    found: dict[str, Any] = {"api_key": None, "password": None, "hash_key": None}
    for name, file_option in (("api_key", "api_key_file"), ("password", "password_file"),
                              ("hash_key", "hash_key_file")):
        path = chosen[file_option]
        variable = SECRET_ENV[name]
        if path and env.get(variable, "").strip() and origins.get(file_option, "").startswith("file "):
            origins[file_option] = f"{origins[file_option]}: {path}, not used: {variable} is set"
            chosen[file_option] = path = None
            where[file_option] = BY_NAME[file_option].flag  # messages name it as when no file is given
        if path:
            found[name] = _read_file(path, where[file_option])
            origins[name] = f"file {path}"
            where[name] = where[file_option]
            check_secret(name, found[name], f"{where[file_option]} {path}")
        elif env.get(variable, "").strip():
            found[name] = Secret(env[variable].strip())
            origins[name] = f"env {variable}"
            where[name] = variable
            check_secret(name, found[name], variable)
    # systemd's LoadCredential= (agent.service): used for what nothing above gave.
    from agent.service import CREDENTIALS, CREDENTIALS_ENV, CredentialsError, read_credentials

    directory = env.get(CREDENTIALS_ENV, "")
    for name, credential in CREDENTIALS.items():  # read by agent.service, which must not hang on a FIFO either
        problem = regular_file_problem(os.path.join(directory, credential)) if directory else None
        if problem is not None:  # (read_credentials reads each one, used or not)
            raise ConfigError(f"${CREDENTIALS_ENV}/{credential} {os.path.join(directory, credential)}: {problem}")
    try:
        credentials = read_credentials(env)
    except CredentialsError as error:
        raise ConfigError(str(error)) from None
    for name, (path, value) in credentials.items():
        if found[name] is None:
            found[name] = Secret(value)
            origins[name] = f"credential {path}"
            where[name] = f"${CREDENTIALS_ENV}/{CREDENTIALS[name]}"
            check_secret(name, found[name], f"{where[name]} ({path})")
    return found

"""ParseSettings validation and the format registry."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from agent.events import Line, Source
from agent.parsing import FORMATS, ParseSettings, TextInfo, make_parser, register_format, validate_settings
from agent.parsing.parse_text import PlainFormat

SOURCE = Source("settings-key", "/var/log/app.log")


def test_defaults_are_valid() -> None:
    settings = ParseSettings()
    validate_settings(settings)
    assert (settings.format, settings.multiline_start, settings.multiline_max_lines,
            settings.multiline_max_bytes, settings.multiline_timeout, settings.keep_original) == (
        "auto", None, 500, 1048576, 2.0, False)


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        ParseSettings().format = "json"  # type: ignore[misc]


@pytest.mark.parametrize(("changes", "reason"), [
    ({"format": "xml"}, "format 'xml' is not known (one of: auto, bentoml, gunicorn, json"),
    ({"format": None}, "format None is not known"),
    ({"multiline_start": "^(unclosed"}, "multiline_start '^(unclosed' is not a valid regular expression: "),
    ({"multiline_start": 5}, "multiline_start must be a regular expression"),
    ({"multiline_max_lines": 0}, "multiline_max_lines must be at least 1, got 0"),
    ({"multiline_max_lines": -3}, "multiline_max_lines must be at least 1"),
    ({"multiline_max_lines": 2.5}, "multiline_max_lines must be an integer"),
    ({"multiline_max_lines": True}, "multiline_max_lines must be an integer"),
    ({"multiline_max_bytes": 0}, "multiline_max_bytes must be at least 1"),
    ({"multiline_timeout": 0}, "multiline_timeout must be a positive number of seconds, got 0"),
    ({"multiline_timeout": -1.0}, "multiline_timeout must be a positive number"),
    ({"multiline_timeout": float("nan")}, "multiline_timeout must be a positive number"),
    ({"multiline_timeout": float("inf")}, "multiline_timeout must be a positive number"),
    ({"multiline_timeout": "2s"}, "multiline_timeout must be a number of seconds"),
    ({"keep_original": "yes"}, "keep_original must be true or false"),
])
def test_invalid_settings_name_the_setting_and_reason(changes: dict, reason: str) -> None:
    settings = ParseSettings(**changes)
    with pytest.raises(ValueError, match="^" + re.escape(reason)):
        validate_settings(settings)
    with pytest.raises(ValueError):
        make_parser(settings, SOURCE)


def test_integer_timeout_is_fine() -> None:
    validate_settings(ParseSettings(multiline_timeout=5))


class _Shouty(PlainFormat):
    """A stand-in for a later model-server format."""

    name = "test-shouty"

    def head(self, text: str) -> TextInfo:
        info = super().head(text)
        if text.startswith("!"):
            return TextInfo(info.timestamp, {"log": {"level": "error"}})
        return info


@pytest.fixture
def shouty() -> Iterator[type[_Shouty]]:
    register_format(_Shouty)
    yield _Shouty
    FORMATS.pop(_Shouty.name, None)


def test_a_registered_format_is_usable_by_name(shouty: type[_Shouty]) -> None:
    settings = ParseSettings(format=shouty.name)
    validate_settings(settings)
    parser = make_parser(settings, SOURCE)
    parser.feed(Line(SOURCE, 0, 6, "!fire", 1.0))
    [record] = parser.flush()
    assert record.fields == {"log": {"level": "error"}}
    assert register_format(shouty) is shouty  # registering the same class again is harmless


def test_a_taken_name_is_refused_unless_replaced(shouty: type[_Shouty]) -> None:
    class Other(PlainFormat):
        name = shouty.name

    with pytest.raises(ValueError, match="already registered by _Shouty"):
        register_format(Other)
    assert register_format(Other, replace=True) is Other
    assert FORMATS[shouty.name] is Other


def test_a_format_needs_a_name() -> None:
    class Nameless(PlainFormat):
        name = ""

    with pytest.raises(ValueError, match="has no name"):
        register_format(Nameless)

"""``dlq replay`` keeps letters the output could not take (an OutputError,
logged with the reason) and lets any other exception surface: it is a bug,
and the dead-letter file stays as it was."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from agent.errors import TransientOutputError
from agent.outputs.dead_letter import read_letters, replay

LETTER = (b'{"@timestamp":"2026-11-27T09:00:00.000Z","target":"logs-a","_id":"id-%d","status":400,'
          b'"error":{"type":"document_parsing_exception","reason":"bad"},"document":{"message":"m"}}\n')


@pytest.fixture
def letters_file(tmp_path: Path) -> Path:
    path = tmp_path / "dead-letter.ndjson"
    path.write_bytes(b"".join(LETTER % n for n in range(3)))
    return path


def test_an_unexpected_error_surfaces_and_leaves_the_file_alone(letters_file: Path):
    before = letters_file.read_bytes()

    def send(events):
        raise KeyError("a bug in the output")

    with pytest.raises(KeyError, match="a bug in the output"):
        replay(str(letters_file), send, None)
    assert letters_file.read_bytes() == before


def test_an_output_error_keeps_the_letters_and_says_why(letters_file: Path, caplog):
    def send(events):
        raise TransientOutputError("connection refused")

    logger = logging.getLogger("modelscribe")
    logger.addHandler(caplog.handler)  # the agent's logger may not propagate (selflog.configure)
    try:
        result = replay(str(letters_file), send, None)
    finally:
        logger.removeHandler(caplog.handler)
    assert (result.failed, result.indexed, result.reasons) == (3, 0, ("connection refused",))
    assert len(read_letters(str(letters_file))[0]) == 3
    warning = next(r for r in caplog.records if r.getMessage().startswith("dead letters not re-sent"))
    assert warning.kv == {"letters": 3, "error": "connection refused"}


def test_the_cli_lets_an_unexpected_replay_error_surface(letters_file: Path, monkeypatch):
    from click.testing import CliRunner

    from agent import cli
    from agent.outputs import elasticsearch

    class Output:
        @classmethod
        def from_config(cls, config):
            return cls()

        def preflight(self):
            pass

        def send(self, events):
            raise KeyError("a bug in the output")

        def close(self):
            pass

    monkeypatch.setattr(elasticsearch, "ElasticsearchOutput", Output)
    result = CliRunner().invoke(cli.main, ["dlq", "replay", "--dead-letter-file", str(letters_file)])
    assert isinstance(result.exception, KeyError)  # not turned into a "kept for retry" count
    assert "kept_for_retry" not in result.output


def _imports(path: Path) -> set[str]:
    """Every agent module ``path`` imports, type-only imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agent"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("agent"))
    return found


def test_the_dead_letter_modules_depend_one_way():
    outputs = Path(__file__).resolve().parents[2] / "agent" / "outputs"
    assert "agent.outputs.dead_letter" in _imports(outputs / "dead_letter_index.py")
    assert not {name for name in _imports(outputs / "dead_letter.py") if "dead_letter_index" in name}

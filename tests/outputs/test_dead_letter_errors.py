"""``dlq replay`` keeps letters the output could not take (an OutputError,
logged with the reason) and lets any other exception surface: it is a bug,
and the dead-letter file stays as it was. Its exit code tells the output's
state (3) from letters rejected again (4)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from agent.errors import TransientOutputError
from agent.outputs.base import Response
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


def _replay(letters_file: Path, monkeypatch, send):
    """``modelscribe dlq replay`` with an output whose ``send`` is ``send``."""
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
            return send(events)

        def close(self):
            pass

    monkeypatch.setattr(elasticsearch, "ElasticsearchOutput", Output)
    return CliRunner().invoke(cli.main, ["dlq", "replay", "--dead-letter-file", str(letters_file)])


def test_the_cli_lets_an_unexpected_replay_error_surface(letters_file: Path, monkeypatch):
    def send(events):
        raise KeyError("a bug in the output")

    result = _replay(letters_file, monkeypatch, send)
    assert isinstance(result.exception, KeyError)  # not turned into a "kept for retry" count
    assert "kept_for_retry" not in result.output


_ERRORS = {400: {"type": "document_parsing_exception", "reason": "still bad"},
           429: {"type": "es_rejected_execution_exception", "reason": "busy"}}


def _items(*statuses):
    """A bulk answer with one item per letter, of these statuses."""
    def answer(events):
        items = []
        for event, status in zip(events, statuses):
            item = {"_id": event.doc_id, "status": status}
            if status in _ERRORS:
                item["error"] = _ERRORS[status]
            items.append({"create": item})
        return Response(200, {"errors": any(status >= 300 for status in statuses), "items": items})
    return answer


def _answer(status, body):
    return lambda events: Response(status, body)


@pytest.mark.parametrize("answer, code, printed, left", [
    (_answer(503, {"error": "down"}), 3, "indexed=0 duplicates=0 still_rejected=0 kept_for_retry=3", 3),
    (_items(201, 429, 201), 3, "indexed=2 duplicates=0 still_rejected=0 kept_for_retry=1", 1),
    (_items(201, 400, 429), 4, "indexed=1 duplicates=0 still_rejected=1 kept_for_retry=1", 2),
    (_answer(400, {"error": {"type": "illegal_argument_exception", "reason": "no"}}), 4,
     "indexed=0 duplicates=0 still_rejected=3 kept_for_retry=0", 3),
    (_items(201, 409, 201), 0, "indexed=2 duplicates=1 still_rejected=0 kept_for_retry=0", 0),
], ids=["output-down", "item-429", "rejected-and-429", "request-400", "all-taken"])
def test_replay_exit_code_says_whether_the_output_or_the_letters_are_at_fault(letters_file: Path, monkeypatch,
                                                                            answer, code, printed, left):
    """Exit 3 (the output's state: unreachable, overloaded) when letters were
    kept only because the output could not take them; 4 when some were
    rejected again, also by a 400 on the whole request (audit 2, flow #9:
    it was 4 for both)."""
    result = _replay(letters_file, monkeypatch, answer)
    assert printed in result.output
    assert result.exit_code == code
    assert len(read_letters(str(letters_file))[0]) == left


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

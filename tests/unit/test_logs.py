"""One log (idp.logs): every record one JSON object per line, or readable text; audit lines to
IDP_AUDIT_LOG when it is set."""

from __future__ import annotations

import io
import json
import logging

import pytest

from idp import audit, logs


@pytest.fixture
def bare_root(monkeypatch: pytest.MonkeyPatch) -> _Bare:
    """A root logger as a process without pytest starts: no handlers. (Emptied when first
    used, in the test itself: pytest adds its capture handlers after the fixtures.)"""
    root = logging.getLogger()
    return _Bare(root, monkeypatch)


class _Bare:
    def __init__(self, root: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.monkeypatch = root, monkeypatch

    def empty(self) -> logging.Logger:
        root = self.root
        self.monkeypatch.setattr(root, "handlers", [])
        self.monkeypatch.setattr(root, "level", logging.WARNING)
        return root


def capture(root: logging.Logger) -> io.StringIO:
    (handler,) = root.handlers
    stream = io.StringIO()
    handler.setStream(stream)
    return stream


def test_every_record_is_one_json_line_with_its_fields(app, bare_root):
    root = bare_root.empty()
    logs.configure(logs.JSON, "INFO")
    stream = capture(root)
    with app.test_request_context("/x"):
        app.preprocess_request()
        logging.getLogger("idp.http").warning("two\nlines %s", "here")
        audit.record("key.rotated", "success", kid="k", staged=False)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert list(first)[:5] == ["ts", "level", "logger", "msg", "request_id"]
    assert first["msg"] == "two\nlines here" and first["level"] == "WARNING"
    assert first["ts"].endswith("Z") and len(first["request_id"]) == 16
    assert second["event"] == "key.rotated" and second["logger"] == "idp.audit"
    assert second["request_id"] == first["request_id"]


def test_an_exception_is_kept_inside_its_line(bare_root):
    root = bare_root.empty()
    logs.configure(logs.JSON, "INFO")
    stream = capture(root)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("idp.http").exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "Traceback" in json.loads(line)["exc"]


def test_text_is_readable(app, bare_root):
    root = bare_root.empty()
    logs.configure(logs.TEXT, "INFO")
    stream = capture(root)
    logging.getLogger("idp.mail").info("sent")
    assert stream.getvalue().rstrip().endswith("INFO idp.mail: sent")


def test_the_audit_log_can_be_a_file_of_its_own(make_app, tmp_path):
    path = tmp_path / "audit.log"
    app = make_app(IDP_AUDIT_LOG=str(path))
    try:
        with app.app_context():
            audit.record("key.retired", "success", kid="k")
        (line,) = path.read_text().splitlines()
        assert json.loads(line)["event"] == "key.retired"
        assert audit.logger.propagate is False
    finally:
        audit.init_app(app, None)  # the next app logs as before
    assert audit.logger.propagate is True

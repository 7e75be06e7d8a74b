"""``kgmm serve``: options reach the app (limits, store backend); uvicorn is not started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kgmm.cli import app as cli_app

from .conftest import png_bytes


def test_serve_builds_the_app_from_its_options(toy_model_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from fastapi.testclient import TestClient

    started: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    result = CliRunner().invoke(cli_app, [
        "serve", "--model", str(toy_model_dir), "--port", "8123", "--backend", "rdflib",
        "--data-dir", str(tmp_path), "--max-image-bytes", "5000", "--max-question-chars", "30",
        "--no-warm-up", "--no-access-log", "--declare", "ex:canine", "--declare", "fruit"])
    assert result.exit_code == 0, result.output
    assert started["host"] == "127.0.0.1" and started["port"] == 8123
    assert {"ex:canine", "ex:fruit"} <= set(started["app"].state.model.answer_space)
    assert started["access_log"] is False
    limits = started["app"].state.limits
    assert limits.max_image_bytes == 5000 and limits.max_question_chars == 30
    with TestClient(started["app"]) as client:
        health = client.get("/healthz").json()
        assert health["store"]["backend"] == "rdflib" and health["store"]["status"] == "up"
        too_long = client.post("/answer", data={"question": "why " * 10},
                               files={"image": ("a.png", png_bytes(), "image/png")})
        assert too_long.status_code == 422 and too_long.json()["field"] == "question"
        ok = client.post("/answer", data={"question": "Is there a dog?"},
                         files={"image": ("a.png", png_bytes((16, 16)), "image/png")})
        assert ok.status_code == 200, ok.text


def test_serve_refuses_bad_options_before_loading(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_backend = runner.invoke(cli_app, ["serve", "--backend", "mongo"])
    assert bad_backend.exit_code == 2 and "mongo" in bad_backend.output
    bad_limit = runner.invoke(cli_app, ["serve", "--max-image-bytes", "0"])
    assert bad_limit.exit_code == 2 and "max-image-bytes" in bad_limit.output

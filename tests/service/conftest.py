"""Fixtures of the HTTP-service tests: a tiny untrained model, a toy embedded store, the app,
a live uvicorn server on a free loopback port, and headless Chromium.

The model is built the way tests/test_pipeline.py builds its own (toy KG, small CNN, real
MiniLM) and takes a few seconds. Chromium (Debian ``chromium``) and Neo4j are required under
``CI=true`` (missing means fail); locally the tests that need them are skipped.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.stores.embedded import EmbeddedStore
from kgmm.pipeline import KGMM, save_model
from kgmm.reasoning.encoders import build_image_encoder
from kgmm.reasoning.scene_parser import SceneParser, SceneParserConfig
from kgmm.reasoning.vqa_model import COUNT, YESNO, VQAModel
from kgmm.reasoning.vqa_train import default_config
from kgmm.service import ServiceLimits, create_app

from ..graph.toy_kg import toy_graph

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_LIMITS = ServiceLimits(max_image_bytes=300_000, max_image_pixels=250_000,
                            max_question_chars=200)


def required_or_skip(what: str, reason: str) -> None:
    """Fail under ``CI=true``, skip otherwise."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{what} is required under CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")


def png_bytes(size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    kg = CompiledKG.build(toy_graph())
    image_encoder = build_image_encoder("small_cnn", image_size=64)
    config = default_config(kg, ["<unk>", COUNT, YESNO], use_kg=True,
                            image_dim=image_encoder.dim, layers=2)
    parser = SceneParser(SceneParserConfig(feature_dim=image_encoder.dim, embed_dim=384,
                                           objectness_threshold=0.0, max_objects=3))
    path = tmp_path_factory.mktemp("service-models") / "toy"
    save_model(path, kg=kg, vqa=VQAModel(config), parser=parser,
               parser_entities=["ex:dog", "ex:cat", "ex:apple", "ex:car"],
               surface_forms={"ex:car": "automobile"}, image_size=64,
               trained_image_encoder=image_encoder)
    return path


@pytest.fixture(scope="session")
def toy_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-home")


@pytest.fixture(scope="session")
def toy_model(toy_model_dir: Path, toy_home: Path) -> KGMM:
    return KGMM.load(toy_model_dir, data_dir=toy_home)


@pytest.fixture(scope="session")
def toy_store(toy_home: Path) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(data_dir=toy_home)
    store.import_data(toy_graph())
    yield store
    store.close()


@pytest.fixture(scope="session")
def app(toy_model: KGMM, toy_store: EmbeddedStore) -> Any:
    return create_app(toy_model, toy_store, TEST_LIMITS)


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn running ``app`` in a background thread on a free 127.0.0.1 port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="kgmm-test-uvicorn",
                                       daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def live_server(app: Any) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


def chromium_path() -> str | None:
    """Debian's Chromium binary (the real one behind the /usr/bin/chromium wrapper)."""
    for candidate in (os.environ.get("KGMM_CHROMIUM"), "/usr/lib/chromium/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        required_or_skip("Chromium", "no chromium binary (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        required_or_skip("playwright", str(exc))
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=path, headless=True,
                                                  args=["--no-sandbox"])
        except Exception as exc:  # a broken install: missing libraries, no sandbox, ...
            required_or_skip("Chromium", f"{path} does not start: {exc}")
        yield launched
        launched.close()


def neo4j_server_module() -> ModuleType:
    """scripts/neo4j_server.py, imported by path (shared with tests/conftest.py's name)."""
    name = "kgmm_scripts_neo4j_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / "neo4j_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

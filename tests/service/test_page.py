"""The page at ``/`` in headless Chromium: upload, ask, see the answer, the graph drawn (checked
on a screenshot), click a node and walk to a neighbour; and nothing is loaded from elsewhere."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from playwright.sync_api import expect

from .conftest import png_bytes

ANSWER_GOLD = np.array([0xF2, 0xB7, 0x05])
LINKED_TEAL = np.array([0x2A, 0x9D, 0x8F])


def _pixels_near(image: np.ndarray, colour: np.ndarray, tolerance: int = 30) -> int:
    return int((np.abs(image.astype(int) - colour).max(axis=2) <= tolerance).sum())


def test_ask_see_the_graph_and_click_through(browser: Any, live_server: Any,
                                             tmp_path: Path) -> None:
    picture = tmp_path / "scene.png"
    picture.write_bytes(png_bytes())
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    origins: set[str] = set()
    page.on("request", lambda request: origins.add(request.url.split("/")[2]))
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(live_server.url + "/")
        page.wait_for_selector("body[data-state=ready]")
        page.set_input_files("#image-input", str(picture))
        page.fill("#question-input", "What kind of thing is the dog?")
        page.fill("#topk-input", "4")
        page.click("#ask-button")
        page.wait_for_selector("body[data-state=answered]", timeout=30_000)

        assert page.inner_text("#answer-text").strip()
        assert page.inner_text("#answer-score").startswith("score ")
        assert 1 <= page.locator("#alternatives li").count() <= 3
        assert "dog" in page.inner_text("#linked")
        assert page.evaluate("window.kgmm.graph().nodes().length") >= 3
        assert page.evaluate("window.kgmm.graph().edges().length") >= 2

        # the graph is drawn: the canvas shows the answer's gold and the linked entities' teal
        shot = np.asarray(Image.open(io.BytesIO(page.locator("#graph").screenshot()))
                          .convert("RGB"))
        page.screenshot(path=str(tmp_path / "page.png"))
        drawn = (shot.astype(int).sum(axis=2) < 735).mean()
        assert drawn > 0.005, f"only {drawn:.2%} of the graph area is drawn"
        assert _pixels_near(shot, ANSWER_GOLD) > 50
        assert _pixels_near(shot, LINKED_TEAL) > 50

        # click the dog node where it is drawn: its entity panel opens
        box = page.locator("#graph").bounding_box()
        position = page.evaluate("window.kgmm.graph().getElementById('ex:dog')"
                                 ".renderedPosition()")
        page.mouse.click(box["x"] + position["x"], box["y"] + position["y"])
        expect(page.locator("#entity-id")).to_have_text("ex:dog")
        assert page.inner_text("#entity-label") == "dog"
        assert "a member of the genus Canis" in page.inner_text("#entity-description")
        before = page.evaluate("window.kgmm.graph().nodes().length")

        # walk through neighbours until one that is not drawn yet: it is added and shown
        for _ in range(4):
            ids = page.eval_on_selector_all("#neighbours a", "as => as.map(a => a.dataset.id)")
            drawn = set(page.evaluate("window.kgmm.graph().nodes().map(n => n.id())"))
            new = next((i for i in ids if i not in drawn), None)
            page.click(f"#neighbours a[data-id='{new or ids[0]}']")
            expect(page.locator("#entity-id")).to_have_text(new or ids[0])
            if new:
                break
        assert new is not None
        assert page.evaluate("window.kgmm.graph().nodes().length") == before + 1
        assert page.evaluate(f"window.kgmm.graph().getElementById('{new}').selected()")
        page.click("#expand-button")
        assert page.evaluate("window.kgmm.graph().nodes().length") >= before + 1

        # a broken upload shows the problem's title and detail
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
        page.set_input_files("#image-input", str(broken))
        page.click("#ask-button")
        page.wait_for_selector("body[data-state=error]")
        assert "Invalid image" in page.inner_text("#error")
    finally:
        context.close()
    assert origins == {f"127.0.0.1:{live_server.port}"}, origins
    unexpected = [e for e in console_errors if "status of 422" not in e]  # the broken upload
    assert not unexpected, unexpected

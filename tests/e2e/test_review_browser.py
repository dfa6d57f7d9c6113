"""The review page in a real browser (headless Chromium through Selenium): log in, open a
coded note, see its evidence highlighted, accept a code, reject one, add one through the
catalogue typeahead with a selected span as its evidence, reload, and find all three kept, on
the page and in the store. The app runs under uvicorn with a fake coder and a SQLite store.

With ``ICDCODER_SCREENSHOTS=1`` it also writes ``docs/review-worklist.png`` and
``docs/review-note.png`` (``scripts/review-screenshots.py`` makes them from real coded notes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from icdcoder.api.app import create_app
from icdcoder.api.coding import InProcessCoding
from icdcoder.api.keys import create_key, key_ring
from icdcoder.api.users import create_user
from icdcoder.shared.catalogue import Catalogue
from icdcoder.shared.settings import Settings, StoreConfig
from icdcoder.shared.store.migrate import open_store
from icdcoder.shared.store.repository import Store
from icdcoder.shared.store.review import ReviewStore
from tests.conftest import REPO
from tests.e2e.review_kit import browser_missing, chromium, select_text, serve
from tests.integration.test_review_api import PACK, PASSWORD, TEXT, FakeCoder, span

pytestmark = pytest.mark.slow

WAIT_S = 20


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = open_store(StoreConfig(url=f"sqlite:///{tmp_path / 'store.db'}"))
    create_user(store, "ana", PASSWORD)
    return store


@pytest.fixture
def site(store: Store, catalogue: Catalogue, tmp_path: Path) -> Iterator[str]:
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    key = create_key(store, "browser-test")
    settings = Settings().with_section(store=StoreConfig(url=f"sqlite:///{tmp_path / 'store.db'}"))
    app = create_app(
        settings,
        store=store,
        coding=InProcessCoding(store, FakeCoder),
        keys=key_ring("", store),
        pack=PACK,
        catalogue=lambda: catalogue,
    )
    with serve(app) as base:
        auth = {"Authorization": f"Bearer {key}"}
        for note_id in ("adm-1", "adm-2"):
            answer = httpx.post(
                f"{base}/v1/notes?wait=10", json={"id": note_id, "text": TEXT}, headers=auth
            )
            assert answer.status_code == 200, answer.text
        yield base


def rows(driver: Any) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    return {
        row.get_attribute("data-code"): row.get_attribute("class")
        for row in driver.find_elements(By.CSS_SELECTOR, "#code-list li.code")
    }


def test_a_reviewer_accepts_rejects_and_adds_codes_that_survive_a_reload(
    site: str, store: Store
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shots = os.environ.get("ICDCODER_SCREENSHOTS") == "1"
    with chromium() as driver:
        wait = WebDriverWait(driver, WAIT_S)
        driver.get(f"{site}/review")
        wait.until(ec.presence_of_element_located((By.ID, "username")))
        assert "/login" in driver.current_url
        driver.find_element(By.ID, "username").send_keys("ana")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "a.note-link")))
        tab = driver.find_element(By.ID, "tab-needs_review").text
        assert tab.endswith("2")
        if shots:
            driver.save_screenshot(str(REPO / "docs" / "review-worklist.png"))

        driver.find_element(By.LINK_TEXT, "adm-1").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#code-list li.code")))
        marks = driver.find_elements(By.CSS_SELECTOR, "#note-text mark.ev")
        assert {m.text for m in marks} >= {"type 2 diabetes mellitus", "essential hypertension"}
        assert all(m.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)" for m in marks)
        excluded = driver.find_element(By.CSS_SELECTOR, "#note-text mark.excluded")
        assert excluded.text == "chest pain" and "negated" in excluded.get_attribute("title")

        # click a code: its evidence lights up
        driver.find_element(By.CSS_SELECTOR, 'li.code[data-code="E11.9"] .desc').click()
        active = driver.find_elements(By.CSS_SELECTOR, "#note-text mark.ev.active")
        assert [m.text for m in active] == ["type 2 diabetes mellitus"]

        # keyboard: a accepts the selected code and moves on; r rejects the next
        keys = ActionChains(driver)
        keys.send_keys("a").perform()
        wait.until(lambda d: "state-accept" in rows(d)["E11.9"])
        keys.send_keys("r").perform()
        wait.until(lambda d: "state-reject" in rows(d)["I10"])

        # add: select the evidence in the note, / to search, choose from the typeahead
        select_text(driver, "Diabetic nephropathy")
        ActionChains(driver).send_keys("/").perform()
        search = driver.find_element(By.ID, "search")
        assert driver.switch_to.active_element == search
        search.send_keys("diab nephr")
        hit = wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, '#hits li[data-code="E11.21"]'))
        )
        hit.click()
        wait.until(lambda d: "state-add" in rows(d).get("E11.21", ""))
        assert "saved" in driver.find_element(By.ID, "message").text
        if shots:
            driver.find_element(By.CSS_SELECTOR, 'li.code[data-code="E11.9"] .desc').click()
            driver.save_screenshot(str(REPO / "docs" / "review-note.png"))

        # reload: everything is still there, the added code's evidence highlighted
        driver.refresh()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#code-list li.code")))
        after = rows(driver)
        assert "state-accept" in after["E11.9"]
        assert "state-reject" in after["I10"]
        assert "state-add" in after["E11.21"] and "system-added" in after["E11.21"]
        added = driver.find_element(By.CSS_SELECTOR, 'li.code[data-code="E11.21"]')
        index = added.get_attribute("data-index")
        evidence = [
            m.text
            for m in driver.find_elements(By.CSS_SELECTOR, "#note-text mark.ev")
            if index in (m.get_attribute("data-codes") or "").split()
        ]
        assert evidence == ["Diabetic nephropathy"]
        assert driver.find_element(By.TAG_NAME, "main").get_attribute("data-version") == "3"

        # the help and the next note, by keyboard
        ActionChains(driver).send_keys("?").perform()
        assert driver.find_element(By.ID, "help").is_displayed()
        ActionChains(driver).send_keys(Keys.ESCAPE).send_keys("n").perform()
        wait.until(lambda d: d.current_url.endswith("/review/notes/adm-2"))

    state = ReviewStore(store, PACK).note("adm-1")
    assert state is not None
    assert [(d.code, d.action, d.user) for d in state.decisions] == [
        ("E11.9", "accept", "ana"),
        ("I10", "reject", "ana"),
        ("E11.21", "add", "ana"),
    ]
    assert state.decisions[2].evidence == (span(TEXT, "Diabetic nephropathy"),)

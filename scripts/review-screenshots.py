"""Screenshots of the review page and a keyboard-only review of the three examples/ notes.

    python scripts/review-screenshots.py [--out docs] [--no-shots]

Codes ``examples/*.txt`` with the default pack through the app (in process, SQLite store in a
temporary folder), then drives headless Chromium (Selenium) as a reviewer on the keyboard
only: per note, ``j`` to each code and ``a`` (the system accepted it) or ``r`` (it sent it to
review), ``/`` and a code typed with Enter to add one, ``m`` to mark the note reviewed, ``n``
to the next note. Prints the seconds per note from page load to reviewed. They are
machine-driven: keys are sent as fast as the page answers, so they measure the page and the
server, not a coder's reading and judgement. Writes ``review-worklist.png`` and
``review-note.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from icdcoder.api.app import in_process_app  # noqa: E402
from icdcoder.api.keys import create_key, key_ring  # noqa: E402
from icdcoder.api.users import create_user  # noqa: E402
from icdcoder.shared.pack import open_pack  # noqa: E402
from icdcoder.shared.settings import Settings, StoreConfig  # noqa: E402
from icdcoder.shared.store.migrate import open_store  # noqa: E402
from tests.e2e.review_kit import chromium, serve  # noqa: E402

PASSWORD = "screenshots-only"
#: The code a reviewer adds to each example (typed after /), one the note supports.
ADD = {
    "admission-note-copd": "Z79.01",  # long-term anticoagulants: apixaban
    "discharge-summary-diabetes": "Z79.4",  # long-term insulin
    "discharge-summary-fracture": "W19",  # unspecified fall
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--no-shots", action="store_true", help="only time the review")
    args = parser.parse_args()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    tmp = Path(tempfile.mkdtemp(prefix="icdcoder-shots-"))
    settings = Settings().with_section(store=StoreConfig(url=f"sqlite:///{tmp / 'store.db'}"))
    store = open_store(settings.store)
    create_user(store, "coder", PASSWORD)
    key = create_key(store, "screenshots")
    opened = open_pack(settings.pack)
    app = in_process_app(settings, store=store, opened=opened, keys=key_ring("", store))
    examples = sorted((REPO / "examples").glob("*.txt"))
    with serve(app) as base, chromium(1500, 950) as driver:
        for path in examples:
            for _ in range(20):  # the first note waits for the coder to load
                answer = httpx.post(
                    f"{base}/v1/notes?wait=60",
                    json={"id": path.stem, "text": path.read_text()},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=90,
                )
                answer.raise_for_status()
                if answer.status_code == 200:
                    break
        wait = WebDriverWait(driver, 30)
        driver.get(f"{base}/login")
        driver.find_element(By.ID, "username").send_keys("coder")
        driver.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "a.note-link")))
        if not args.no_shots:
            driver.find_element(By.LINK_TEXT, "discharge-summary-diabetes").click()
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "li.code")))
            keys = ActionChains(driver)
            keys.send_keys("j").perform()
            time.sleep(0.8)  # the smooth scroll to the evidence
            driver.save_screenshot(str(args.out / "review-note.png"))
        # the keyboard-only review, from the first note of the worklist
        driver.get(f"{base}/review")
        driver.find_element(By.CSS_SELECTOR, "a.note-link").click()
        seconds: dict[str, float] = {}
        presses: dict[str, int] = {}
        for _ in examples:
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "li.code")))
            started = time.perf_counter()
            note = driver.find_element(By.ID, "review").get_attribute("data-note") or ""
            count = 0
            rows = driver.find_elements(By.CSS_SELECTOR, "#code-list li.code")
            keys = ActionChains(driver)
            keys.send_keys("j").perform()
            count += 1
            for row in rows:
                classes = row.get_attribute("class") or ""
                key_name = "a" if "system-accept" in classes else "r"
                version = driver.find_element(By.ID, "review").get_attribute("data-version")
                ActionChains(driver).send_keys(key_name).perform()
                count += 1
                wait.until(
                    lambda d, v=version: (
                        d.find_element(By.ID, "review").get_attribute("data-version") != v
                    )
                )
            code = ADD.get(note)
            if code:
                version = driver.find_element(By.ID, "review").get_attribute("data-version")
                ActionChains(driver).send_keys("/").perform()
                search = driver.find_element(By.ID, "search")
                search.send_keys(code)
                wait.until(
                    ec.presence_of_element_located(
                        (By.CSS_SELECTOR, f'#hits li.active[data-code="{code}"]')
                    )
                )
                search.send_keys(Keys.ENTER)
                count += 1 + len(code) + 1
                wait.until(
                    lambda d, v=version: (
                        d.find_element(By.ID, "review").get_attribute("data-version") != v
                    )
                )
            ActionChains(driver).send_keys("m").perform()
            count += 1
            wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "reviewed"))
            seconds[note] = time.perf_counter() - started
            presses[note] = count
            if not driver.find_elements(By.ID, "next-note"):
                break  # the last note not yet reviewed
            ActionChains(driver).send_keys("n").perform()
            wait.until(
                lambda d, n=note: d.find_element(By.ID, "review").get_attribute("data-note") != n
            )
        if not args.no_shots:  # the worklist after the review: counts and reviewers
            driver.get(f"{base}/review")
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "a.note-link")))
            driver.save_screenshot(str(args.out / "review-worklist.png"))
    for note, value in seconds.items():
        print(f"{note}: {value:.2f} s, {presses[note]} key presses (machine-driven)")
    if seconds:
        print(f"mean {statistics.mean(seconds.values()):.2f} s per note over {len(seconds)} notes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

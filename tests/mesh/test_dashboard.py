"""The store dashboard in a real browser: Debian's headless Chromium, driven through Debian's
chromedriver by Selenium, against real lanes (and a cloud) on loopback.

The main test: ``lane1`` (a manager) dials ``lane2`` (a cashier). A manager opens lane1's page,
is refused with a wrong token, signs in through the form, sees a sale made on lane2 (through
lane2's own API) appear without the page reloading (with today's totals, the stock it took and
the SKU it oversold), searches the stock, sees the day's Z-report once both lanes closed the
day, and sees lane2 shown as down once its daemon stops.

The sale comes through the change feed: with the feed live, the page asks for the sales list
only on an event or every 30 s, and the sale must show within 15 s of being made; the feed's
own ``sale`` event must be listed among the live events too. Lane2 going down must show both
as a ``peer_down`` event and in the Lanes table (from the status asked every 2 s).

Two more: the page's own lane restarting under it (the feed resumed with ``Last-Event-ID``),
and the cloud panel (link up, nothing pending; cloud stopped, link down, a sale pending).

Screenshots of those states are kept in the directory named by ``LANESYNC_SCREENSHOTS``
(default: ``screenshots`` under the test's pytest tmp path). Chromium starts with a fresh
profile and the flags that stop it reaching for the network (none is reachable from a store's
back office, nor from the test machine).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from lanesync.core.identity import Role

from .cluster import LOOPBACK, Cluster, Daemon, wait_connected, wait_until

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them: "
        "apt-get install chromium chromium-driver)",
    ),
]

SCREENSHOTS_ENV = "LANESYNC_SCREENSHOTS"
# Headless, and nothing that reaches for the network: no QUIC probing, no first-run pages, no
# component or safe-browsing downloads, no sync. --no-sandbox: CI runs as root in a container.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--window-size=1280,1100",
)
# The page asks for the status every 2 s; a peer's sale reaches lane1 in well under a second.
SEEN_TIMEOUT_S = 15.0
# lane1 notices lane2's connection closing at once (a TCP close), then the next status refresh.
DOWN_TIMEOUT_S = 20.0
# A restarted lane answers in ~1 s; the page retries its feed after 1, 2, 5 then 10 s.
RESTART_TIMEOUT_S = 30.0
MILK_PRICE = 120
TIMES = "\N{MULTIPLICATION SIGN}"  # a sale line reads quantity, this sign, SKU
MILK_RECEIVED = 10
BREAD_PRICE = 250
BREAD_RECEIVED = 2
BREAD_SOLD = 3  # one more than received: bread is oversold


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    chosen = os.environ.get(SCREENSHOTS_ENV)
    directory = Path(chosen) if chosen else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    assert CHROMIUM is not None  # the skipif above
    assert CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # for console_errors
    # The driver's path is given, so Selenium never runs its manager (which would download one).
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


# -- reading the page ------------------------------------------------------------------------------


def text_of(browser: WebDriver, css: str) -> str:
    try:
        return str(browser.find_element(By.CSS_SELECTOR, css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def attribute_of(browser: WebDriver, css: str, name: str) -> str | None:
    try:
        value = browser.find_element(By.CSS_SELECTOR, css).get_attribute(name)
    except (NoSuchElementException, StaleElementReferenceException):
        return None
    return None if value is None else str(value)


def lane_link(browser: WebDriver, lane: str) -> str | None:
    """What the Lanes table says of ``lane``'s link: "up", "down", or None (no row)."""
    return attribute_of(browser, f'#lanes tr[data-lane="{lane}"]', "data-link")


def wait_page(browser: WebDriver, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    wait_until(
        predicate,
        timeout,
        lambda: f"{what}; the page shows:\n{text_of(browser, 'body')}",
        interval=0.1,
    )


def sign_in(browser: WebDriver, token: str) -> None:
    field = browser.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    browser.find_element(By.ID, "login").click()


def console_errors(browser: WebDriver) -> list[str]:
    """Errors the page logged, apart from failed requests (a stopped lane's own are expected)."""
    return [
        str(entry["message"])
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]


# -- the test --------------------------------------------------------------------------------------


def test_a_manager_signs_in_sees_a_sale_of_another_lane_live_and_sees_it_go_down(
    cluster: Cluster, browser: WebDriver, screenshots: Path
) -> None:
    store = cluster.store()
    lane2 = cluster.start(cluster.enroll(store, "lane2"))
    lane1 = cluster.start(cluster.enroll(store, "lane1", Role.MANAGER), [lane2.listen])
    wait_connected(lane1, {"lane2"})
    lane1.set_price("milk", MILK_PRICE)
    lane1.set_price("bread", BREAD_PRICE)
    lane1.receive("milk", MILK_RECEIVED)
    lane1.receive("bread", BREAD_RECEIVED)
    wait_until(lambda: lane2.on_hand("bread") == BREAD_RECEIVED, 15, "lane2 got the receipts")

    browser.get(f"{lane1.api}/")
    assert browser.title == "lanesync · store dashboard"
    assert browser.find_element(By.ID, "board").is_displayed() is False

    # A wrong token: refused, said so, nothing of the store shown, nothing kept.
    sign_in(browser, "not-the-token")
    wait_page(
        browser,
        lambda: "refused" in text_of(browser, "#login-error"),
        SEEN_TIMEOUT_S,
        "a wrong token is refused on the page",
    )
    assert browser.find_element(By.ID, "board").is_displayed() is False
    assert text_of(browser, "#identity") == ""
    assert browser.execute_script("return sessionStorage.length") == 0
    browser.save_screenshot(str(screenshots / "1-wrong-token.png"))

    sign_in(browser, lane1.token)
    wait_page(
        browser, lambda: lane_link(browser, "lane2") == "up", SEEN_TIMEOUT_S, "lane2 shown up"
    )
    assert lane_link(browser, "lane1") == "up"  # this lane, first row
    wait_page(
        browser,
        lambda: attribute_of(browser, "#feed-state", "data-state") == "live",
        SEEN_TIMEOUT_S,
        "the change feed followed",
    )
    assert "lane lane1" in text_of(browser, "#identity")
    # The token is in the tab's session, never in the address.
    assert lane1.token not in browser.current_url
    assert browser.execute_script("return Object.values(sessionStorage)") == [lane1.token]
    wait_page(
        browser,
        lambda: text_of(browser, '#stock tr[data-sku="milk"]') == f"milk {MILK_RECEIVED}",
        SEEN_TIMEOUT_S,
        "milk's stock listed",
    )

    # A sale on the other lane, through that lane's API; the page must not reload to show it
    # (a reload would drop this marker).
    browser.execute_script("window.lanesyncTestMarker = 'not reloaded'")
    lines = [{"sku": "milk", "qty": 2}, {"sku": "bread", "qty": BREAD_SOLD}]
    sale_id = str(lane2.write("/v1/sales", {"lines": lines})["sale_id"])
    total = 2 * MILK_PRICE + BREAD_SOLD * BREAD_PRICE
    wait_page(
        browser,
        lambda: bool(attribute_of(browser, f'#sales tr[data-sale="{sale_id}"]', "data-sale")),
        SEEN_TIMEOUT_S,
        f"sale {sale_id} of lane2 listed on lane1's page",
    )
    assert sale_id in text_of(browser, '#events li[data-type="sale"]')
    sale_row = text_of(browser, f'#sales tr[data-sale="{sale_id}"]')
    assert f"2 {TIMES} milk, {BREAD_SOLD} {TIMES} bread" in sale_row, sale_row
    assert f"{total // 100}.{total % 100:02d}" in sale_row, sale_row
    wait_page(
        browser,
        lambda: text_of(browser, '#stock tr[data-sku="milk"]') == f"milk {MILK_RECEIVED - 2}",
        SEEN_TIMEOUT_S,
        "milk's stock down by the sale",
    )
    wait_page(
        browser,
        lambda: (
            (text_of(browser, "#today-count"), text_of(browser, "#today-net"))
            == ("1", f"{total // 100}.{total % 100:02d}")
        ),
        SEEN_TIMEOUT_S,
        "today's count and net",
    )
    oversold = '#oversold tr[data-sku="bread"]'
    wait_page(
        browser,
        lambda: text_of(browser, oversold) == f"bread {BREAD_RECEIVED - BREAD_SOLD} {sale_id}",
        SEEN_TIMEOUT_S,
        "bread shown oversold by the sale",
    )
    assert browser.execute_script("return window.lanesyncTestMarker") == "not reloaded"
    browser.save_screenshot(str(screenshots / "2-sale-from-lane2.png"))

    search = browser.find_element(By.ID, "stock-query")
    search.send_keys("BRE")  # a part of the SKU, any case
    wait_page(
        browser,
        lambda: text_of(browser, "#stock tbody") == f"bread {BREAD_RECEIVED - BREAD_SOLD}",
        SEEN_TIMEOUT_S,
        "the search lists bread only",
    )
    search.send_keys("x")
    wait_page(
        browser,
        lambda: text_of(browser, "#stock-note") == "No SKU matches.",
        SEEN_TIMEOUT_S,
        "the search says nothing matches",
    )
    assert text_of(browser, "#stock tbody") == ""
    search.send_keys(Keys.CONTROL, "a")
    search.send_keys(Keys.BACKSPACE)  # as typed (clear() sends no input event)
    wait_page(
        browser,
        lambda: (
            text_of(browser, "#stock tbody").splitlines()
            == [f"bread {BREAD_RECEIVED - BREAD_SOLD}", f"milk {MILK_RECEIVED - 2}"]
        ),
        SEEN_TIMEOUT_S,
        "an empty search lists every SKU",
    )

    # Both lanes close the day: the store's Z-report of it shows, with the sale in it.
    assert browser.find_element(By.ID, "zreport-panel").is_displayed() is False
    for lane in (lane1, lane2):
        lane.write("/v1/close", {})
    wait_page(
        browser,
        lambda: text_of(browser, "#zreport-net") == f"{total // 100}.{total % 100:02d}",
        SEEN_TIMEOUT_S,
        "the day's Z-report shown",
    )
    assert text_of(browser, "#zreport-sales") == "1"
    day = text_of(browser, "#zreport-day")
    assert f"closes {day}" in text_of(browser, '#events li[data-type="day_close"]')  # the feed's
    assert text_of(browser, "#zreport-state").startswith("Complete")
    assert text_of(browser, '#zreport-lanes tr[data-lane="lane2"]').startswith("lane2 1-1 1 0")
    assert text_of(browser, '#zreport-skus tr[data-sku="bread"]') == f"bread {BREAD_SOLD} 7.50"
    report = browser.find_element(By.ID, "zreport-panel")
    browser.execute_script("arguments[0].scrollIntoView()", report)
    browser.save_screenshot(str(screenshots / "3-z-report.png"))
    browser.execute_script("window.scrollTo(0, 0)")

    lane2.stop_api()
    wait_page(
        browser, lambda: lane_link(browser, "lane2") == "down", DOWN_TIMEOUT_S, "lane2 shown down"
    )
    wait_page(
        browser,
        lambda: "lane2" in text_of(browser, '#events li[data-type="peer_down"]'),
        SEEN_TIMEOUT_S,
        "lane2's peer_down event listed",
    )
    assert browser.execute_script("return window.lanesyncTestMarker") == "not reloaded"
    browser.save_screenshot(str(screenshots / "4-lane2-down.png"))
    assert console_errors(browser) == []


def test_the_page_follows_its_own_lane_through_a_restart_and_misses_no_event(
    cluster: Cluster, browser: WebDriver, screenshots: Path
) -> None:
    """The lane the page came from restarts (a reboot): the page says it does not answer,
    keeps the token, reconnects to the feed with the last event id it saw, and gets the sale
    made on lane2 meanwhile exactly once, with no event it already had sent again."""
    store = cluster.store()
    lane2 = cluster.start(cluster.enroll(store, "lane2"))
    lane1_dir = cluster.enroll(store, "lane1", Role.MANAGER)
    lane1 = cluster.start(lane1_dir, [lane2.listen])
    wait_connected(lane1, {"lane2"})
    price_id = lane1.set_price("milk", MILK_PRICE)
    wait_until(lambda: lane2.chain_head("lane1") == 1, 15, "lane2 got the price")

    browser.get(f"{lane1.api}/")
    sign_in(browser, lane1.token)
    wait_page(
        browser,
        lambda: (
            price_id in text_of(browser, '#events li[data-type="price"]')
            and attribute_of(browser, "#feed-state", "data-state") == "live"
        ),
        SEEN_TIMEOUT_S,
        "the feed live, with the price",
    )
    browser.execute_script("window.lanesyncTestMarker = 'not reloaded'")

    api_port = urlsplit(lane1.api).port
    cluster.stop(lane1)
    wait_page(
        browser,
        lambda: (
            "did not answer" in text_of(browser, "#board-error")
            and attribute_of(browser, "#feed-state", "data-state") == "reconnecting"
            and lane_link(browser, "lane1") == "down"
        ),
        SEEN_TIMEOUT_S,
        "the page says its lane does not answer",
    )
    browser.save_screenshot(str(screenshots / "5-own-lane-down.png"))
    sale_id = lane2.sell("milk", 1)

    cluster.start(lane1_dir, [lane2.listen], extra=["--api", f"{LOOPBACK}:{api_port}"])
    wait_page(
        browser,
        lambda: (
            bool(attribute_of(browser, f'#sales tr[data-sale="{sale_id}"]', "data-sale"))
            and attribute_of(browser, "#feed-state", "data-state") == "live"
            and sale_id in text_of(browser, '#events li[data-type="sale"]')
        ),
        RESTART_TIMEOUT_S,
        "the page back live with lane2's sale",
    )
    assert not browser.find_element(By.ID, "board-error").is_displayed()
    assert lane_link(browser, "lane1") == "up"
    events = text_of(browser, "#events").splitlines()
    assert sum(price_id in line for line in events) == 1, events  # resumed, not replayed
    assert sum(sale_id in line for line in events) == 1, events
    assert browser.execute_script("return window.lanesyncTestMarker") == "not reloaded"
    assert browser.execute_script("return Object.values(sessionStorage)") == [lane1.token]
    browser.save_screenshot(str(screenshots / "6-own-lane-back.png"))


def test_the_cloud_panel_shows_the_link_and_what_is_still_pending(
    cluster: Cluster, browser: WebDriver, screenshots: Path
) -> None:
    """A lane with the store's cloud: the panel shows the link up and nothing pending once the
    cloud acknowledged a sale; with the cloud stopped, the link down and the next sale pending."""
    store = cluster.store()  # the directory "store" under the cluster's root (cwd of the CLI)
    lane1_dir = cluster.enroll(store, "lane1", Role.MANAGER)
    for args in (
        ("cloud", "init", "cloud"),
        ("store", "certify-cloud", "store", "cloud/cloud.json", "cloud.cert"),
        ("cloud", "add-store", "cloud", "store/store.json", "cloud.cert"),
    ):
        made = cluster.cli(*args)
        assert made.returncode == 0, made.describe()
    cloud_dir = cluster.root / "cloud"
    serve = ["-m", "lanesync", "cloud", "serve", str(cloud_dir)]
    serve += ["--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0"]
    cloud = cluster.ready(cluster.group.spawn("cloud", cloud_dir, serve, cls=Daemon))
    lane1 = cluster.start(lane1_dir, extra=["--cloud", cloud.listen])

    browser.get(f"{lane1.api}/")
    sign_in(browser, lane1.token)
    lane1.sell("milk", 1, unit_price=MILK_PRICE)
    wait_page(
        browser,
        lambda: (
            attribute_of(browser, "#cloud-link", "data-link") == "up"
            and text_of(browser, "#cloud-pending") == "0 B"
            and text_of(browser, "#leader") == "lane1"
            and "ago" in text_of(browser, "#cloud-ack")
        ),
        RESTART_TIMEOUT_S,
        "the cloud link up, the sale acknowledged",
    )
    assert cloud.listen in text_of(browser, "#cloud-link")
    assert lane_link(browser, "cloud") is None  # the cloud is no lane

    cluster.stop(cloud)
    lane1.sell("milk", 1, unit_price=MILK_PRICE)

    def pending() -> bool:
        shown = text_of(browser, "#cloud-pending")
        return shown.endswith("B") and shown != "0 B"

    wait_page(
        browser,
        lambda: attribute_of(browser, "#cloud-link", "data-link") == "down" and pending(),
        RESTART_TIMEOUT_S,
        "the cloud link down, the second sale pending",
    )
    assert lane_link(browser, "cloud") is None  # the cloud is no lane
    browser.save_screenshot(str(screenshots / "7-cloud-down.png"))

"""The web client in headless Chromium: the scenarios of scripts/browser-test.

Usage: browser_test.py URL SHOTS_DIR [STRIPE_URL] (run by scripts/browser-test, which starts the
server and, at STRIPE_URL, the Stripe stand-in it is configured with: scripts/stripe_stand_in.py).

Every scenario drives the pages as a person would (forms, clicks, the keyboard) and asserts what
the page shows and what the API then holds. Waits are on conditions with deadlines, never sleeps
standing in for them. On a failure: a screenshot of the failing page, its message box, the
browser's console, and exit status 1.
"""

import datetime
import json
import os
import re
import shutil
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

URL, SHOTS = sys.argv[1], sys.argv[2]
STRIPE_URL = sys.argv[3] if len(sys.argv) > 3 else None
WAIT_S = 20
# Search sees a write within 2 s (API.md); the client searches again until then.
SEARCH_WAIT_S = 15
WINDOW = (1280, 900)
PHONE_WIDTH_PX = 375

drivers = []


def log(text):
    print(f"-- {text}", flush=True)


# ---- the API, for setting up and for checking outcomes ------------------------------------


def api(method, path, token=None, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    h = {"Accept": "application/json", **(headers or {})}
    if body is not None:
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = f"Bearer {token}"
    if method == "POST":
        h["Idempotency-Key"] = uuid.uuid4().hex
    request = urllib.request.Request(URL + path, data, h, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def ok(method, path, token=None, body=None, expect=(200, 201)):
    status, doc = api(method, path, token, body)
    assert status in expect, f"{method} {path}: {status} {doc}"
    return doc


def token(user, role="user"):
    return ok("POST", "/v1/auth/dev-token", body={"user_id": user, "role": role})["token"]


def rfc3339(seconds_from_now):
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the browser --------------------------------------------------------------------------


def browser(name):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.label = name
    drivers.append(driver)
    return driver


def shot(driver, name):
    path = os.path.join(SHOTS, f"{name}.png")
    driver.save_screenshot(path)
    log(f"screenshot {path}")


def wait(driver, condition, what, timeout=WAIT_S):
    # The client re-renders lists as they change (orders poll, seats stream): an element found a
    # moment ago may be gone by the time it is read. That is "not yet", so look again.
    try:
        return WebDriverWait(
            driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        ).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"[{driver.label}] timed out after {timeout} s waiting for {what}") from None


def find(driver, css, what=None, timeout=WAIT_S):
    return wait(driver, lambda d: visible(d, css), what or css, timeout)


def visible(driver, css):
    for el in driver.find_elements(By.CSS_SELECTOR, css):
        if el.is_displayed():
            return el
    return None


def message(driver):
    el = visible(driver, ".msg")
    return el.text if el else ""


def go(driver, hash_path):
    driver.get(f"{URL}/{hash_path}")


def sign_in(driver, user, role="user"):
    go(driver, "#/signin")
    form = find(driver, "form[aria-labelledby=dev-title]", "the development sign-in form")
    box = form.find_element(By.NAME, "user_id")
    box.clear()
    box.send_keys(user)
    Select(form.find_element(By.NAME, "role")).select_by_value(role)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, lambda d: d.execute_script("return sessionStorage.getItem('boxoffice.token')"), "a token")
    wait(driver, lambda d: user in d.find_element(By.ID, "nav-signin").text, "the signed-in user in the header")


def seat(driver, seat_id):
    return find(driver, f'rect[data-seat="{seat_id}"]', f"seat {seat_id}")


def seat_class(driver, seat_id):
    return seat(driver, seat_id).get_attribute("class")


def search(driver, words, event_name):
    """Searches from the home page's form until `event_name` is listed (indexing is asynchronous)."""
    go(driver, "#/")
    deadline = time.monotonic() + SEARCH_WAIT_S
    while True:
        box = find(driver, "form.search input[name=q]")
        box.clear()
        box.send_keys(words)
        box.send_keys(Keys.ENTER)
        try:
            return find(driver, f'.cards a[href^="#/events/"]', "results", 2) and wait(
                driver, lambda d: next((a for a in d.find_elements(By.LINK_TEXT, event_name)), None), event_name, 2)
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(f"search for {words!r} never listed {event_name!r}") from None
            go(driver, "#/")


def csp_violations(driver):
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


# ---- the catalogue the scenarios buy from -------------------------------------------------


def catalogue(admin):
    venue = ok("POST", "/v1/venues", admin, {
        "name": "Quillfeather Hall", "city": "Coimbra", "country": "PT", "location": {"lat": 40.2, "lon": -8.42},
        "sections": [
            {"id": "FLOOR", "name": "Floor", "kind": "seated",
             "rows": [{"id": r, "seats": 10} for r in "ABCD"]},
            {"id": "LAWN", "name": "Lawn", "kind": "general", "capacity": 300},
        ],
    })
    prices = [{"section": "FLOOR", "price": {"amount": 5000, "currency": "USD"}},
              {"section": "LAWN", "price": {"amount": 2500, "currency": "USD"}}]
    event = ok("POST", "/v1/events", admin, {
        "name": "Quillfeather Strings", "description": "A string quartet plays the Goldberg Variations.",
        "category": "classical", "performers": [{"name": "Quillfeather Quartet"}], "venue_id": venue["venue_id"],
        "starts_at": rfc3339(30 * 86400), "prices": prices, "per_user_limit": 6,
    })
    return venue, prices, event


# ---- the scenarios ------------------------------------------------------------------------


def scenario_buy_and_watch(admin, event):
    """(a) search, two seats (mouse and keyboard), hold with countdown, sandbox checkout, order
    and QR tickets; (b) a second session sees them held then sold without reloading."""
    eid = event["event_id"]
    a = browser("buyer")
    b = browser("watcher")
    sign_in(a, "buyer-a")
    sign_in(b, "buyer-b")
    go(b, f"#/events/{eid}")
    assert "available" in seat_class(b, "FLOOR-A-3")
    b.execute_script("window.__sameDocument = true")

    link = search(a, "quillfeather", "Quillfeather Strings")
    shot(a, "search")
    link.click()
    find(a, "h1")
    wait(a, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Quillfeather Strings", "the event's title")
    seat(a, "FLOOR-A-3").click()
    a.execute_script("arguments[0].focus()", seat(a, "FLOOR-A-4"))
    ActionChains(a).send_keys(Keys.SPACE).perform()
    for s in ("FLOOR-A-3", "FLOOR-A-4"):
        el = seat(a, s)
        assert el.get_attribute("aria-pressed") == "true", s
        assert el.get_attribute("aria-label") == f"Row A seat {s[-1]} (FLOOR), selected, 50 USD", el.get_attribute("aria-label")
    assert seat(a, "FLOOR-A-5").get_attribute("aria-label") == "Row A seat 5 (FLOOR), available, 50 USD"
    shot(a, "event-selected")
    find(a, "#hold-seats").click()
    clock = find(a, ".hold .countdown", "the hold's countdown")
    first = clock.text
    assert re.fullmatch(r"\d+:\d\d", first), first
    wait(a, lambda d: clock.text != first, "the countdown to move")
    seconds = lambda text: int(text.split(":")[0]) * 60 + int(text.split(":")[1])
    assert 0 < seconds(clock.text) < seconds(first) <= 600, (clock.text, first)
    assert "FLOOR row A seat 3" in find(a, ".hold .held-seats").text
    assert "100 USD" in find(a, ".hold").text
    for s in ("FLOOR-A-3", "FLOOR-A-4"):
        assert "mine" in seat_class(a, s), seat_class(a, s)
    shot(a, "hold")
    log("(a) two seats held, counting down")

    for s in ("FLOOR-A-3", "FLOOR-A-4"):
        wait(b, lambda d: "held" in seat_class(d, s), f"{s} held in the other session")
    assert "held" in seat(b, "FLOOR-A-3").get_attribute("aria-label")
    assert b.execute_script("return window.__sameDocument === true"), "the watcher's page was reloaded"
    wait(b, lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-section="FLOOR"] td:nth-of-type(4)').text == "2",
         "the held count of FLOOR in the section table")
    shot(b, "live-other-session")
    log("(b) the other session saw the seats held through the stream")

    find(a, ".hold button.primary").click()
    wait(a, lambda d: d.current_url.split("#", 1)[-1].startswith("/orders/"), "the order page")
    wait(a, lambda d: d.find_element(By.CSS_SELECTOR, ".order .status").text.lower() == "confirmed", "a confirmed order")
    qrs = wait(a, lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, "img.qr") if i.is_displayed()] or None, "QR codes")
    assert len(qrs) == 2, len(qrs)
    for img in qrs:
        wait(a, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img),
             "a QR image decoded")
        assert "QR code of the ticket for FLOOR row A seat" in img.get_attribute("alt")
    shot(a, "order-confirmed")
    orders = ok("GET", "/v1/me/orders", token("buyer-a"))["items"]
    assert [o["status"] for o in orders] == ["confirmed"], orders
    assert sorted(t["seat"] for t in orders[0]["tickets"]) == ["FLOOR-A-3", "FLOOR-A-4"], orders
    for s in ("FLOOR-A-3", "FLOOR-A-4"):
        wait(b, lambda d: "sold" in seat_class(d, s), f"{s} sold in the other session")
    assert b.execute_script("return window.__sameDocument === true"), "the watcher's page was reloaded"

    go(a, "#/me")
    wait(a, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".ticket img.qr")) == 2, "two tickets on My tickets")
    assert len(a.find_elements(By.CSS_SELECTOR, ".order.confirmed")) == 1
    shot(a, "my-tickets")
    log("(a) paid with the sandbox: order confirmed, two tickets with QR codes")
    return a, b


def scenario_api_error(b, event):
    """(e) a seat taken by someone else after this page read the map (its stream blocked, so the
    page cannot know): the hold's 409 is shown in words, naming the seat."""
    eid = event["event_id"]
    b.execute_cdp_cmd("Network.enable", {})
    b.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/seats/stream*"]})
    go(b, "#/")
    go(b, f"#/events/{eid}")
    assert "available" in seat_class(b, "FLOOR-B-1")
    ok("POST", f"/v1/events/{eid}/holds", token("buyer-c"), {"seats": ["FLOOR-B-1"]})
    seat(b, "FLOOR-B-1").click()
    seat(b, "FLOOR-B-2").click()
    find(b, "#hold-seats").click()
    box = find(b, ".msg.error", "an error message")
    assert box.get_attribute("role") == "alert"
    status, problem = api("POST", f"/v1/events/{eid}/holds", token("buyer-b"), {"seats": ["FLOOR-B-1"]})
    assert status == 409 and problem["code"] == "seats_unavailable", problem
    assert problem["title"] in box.text, (problem["title"], box.text)
    assert "Not available: FLOOR row B seat 1." in box.text, box.text
    assert "held" in seat_class(b, "FLOOR-B-1"), "the refused seat is shown taken"
    assert "selected" in seat_class(b, "FLOOR-B-2"), "the other seat stays chosen, to try again"
    seats = {s["id"]: s["status"] for s in ok("GET", f"/v1/events/{eid}/seats")["seats"]}
    assert seats["FLOOR-B-2"] == "available", "all or nothing: the refused hold took no seat"
    shot(b, "api-error")
    b.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    log(f"(e) shown: {box.text!r}")


def scenario_near_me(b):
    """Search "near me": the browser's position (set through DevTools) becomes `near=` and
    `radius_km=`; only the events within the radius are listed."""
    b.execute_cdp_cmd("Browser.grantPermissions", {"origin": URL, "permissions": ["geolocation"]})
    b.execute_cdp_cmd("Emulation.setGeolocationOverride", {"latitude": 40.21, "longitude": -8.43, "accuracy": 10})
    go(b, "#/")
    find(b, "form.search").find_element(By.XPATH, ".//button[text()='Near me']").click()
    wait(b, lambda d: "near=40.2100%2C-8.4300" in d.current_url, "a search near the browser's position")
    wait(b, lambda d: next(iter(d.find_elements(By.LINK_TEXT, "Quillfeather Strings")), None), "the event in Coimbra")
    cities = [c.text for c in b.find_elements(By.CSS_SELECTOR, ".cards .card")]
    assert cities and all("Coimbra" in c for c in cities), cities
    log(f"near me: {len(cities)} event(s) within 50 km, all in Coimbra")


def scenario_waiting_room(admin, venue, prices):
    """(c) a high-traffic sale opening in a few seconds: the buyer waits in the room, is admitted,
    gets the seat map and holds with the access token."""
    d = browser("queued")
    sign_in(d, "buyer-d")
    event = ok("POST", "/v1/events", admin, {
        "name": "Nightjar Festival", "description": "Sold out in minutes last year.", "category": "festival",
        "performers": [{"name": "Nightjar"}], "venue_id": venue["venue_id"], "starts_at": rfc3339(20 * 86400),
        "on_sale_at": rfc3339(5), "prices": prices, "high_traffic": True,
    })
    eid = event["event_id"]
    go(d, f"#/events/{eid}")
    room = find(d, ".room [role=status]", "the waiting room")
    wait(d, lambda _: "You have a place" in room.text or "in line" in room.text, "a place in the waiting room")
    assert not visible(d, "rect.seat"), "no seat map before admission"
    shot(d, "waiting-room")
    log(f"(c) waiting: {room.text!r}")
    seat(d, "FLOOR-C-5").click()
    access = d.execute_script(f"return sessionStorage.getItem('boxoffice.access.{eid}')")
    assert access, "admitted with an access token"
    find(d, "#hold-seats").click()
    find(d, ".hold .countdown", "a hold on the high-traffic event")
    assert "mine" in seat_class(d, "FLOOR-C-5")
    holds_status, problem = api("POST", f"/v1/events/{eid}/holds", token("buyer-x"), {"seats": ["FLOOR-C-6"]})
    assert holds_status == 403 and problem["code"] == "queue_required", "holds here need the waiting room"
    shot(d, "waiting-room-admitted-hold")
    log("(c) admitted from the waiting room and held FLOOR-C-5")
    return d


def scenario_admin(b):
    """(d) an admin creates a venue (seated and general sections) and an event through the
    forms, puts it on sale now, watches its sales live; the event is then found by search."""
    m = browser("admin")
    sign_in(m, "admin-1", "admin")
    wait(m, lambda d: d.current_url.endswith("#/admin"), "the admin page")
    venue = find(m, "#venue-form")
    for name, value in (("name", "Harbour Pavilion"), ("city", "Aveiro")):
        venue.find_element(By.NAME, name).send_keys(value)
    venue.find_element(By.XPATH, ".//button[text()='Add a section']").click()
    second = venue.find_elements(By.CSS_SELECTOR, "fieldset")[1]
    second.find_element(By.NAME, "id").send_keys("LAWN")
    second.find_element(By.NAME, "name").send_keys("Lawn")
    Select(second.find_element(By.NAME, "kind")).select_by_value("general")
    capacity = second.find_element(By.NAME, "capacity")
    capacity.clear()
    capacity.send_keys("200")
    venue.find_element(By.XPATH, ".//button[text()='Create venue']").click()
    venue_id = find(m, "#venue-form .venue-id", "the new venue's id").text
    form = find(m, "#event-form")
    wait(m, lambda d: len(form.find_elements(By.CSS_SELECTOR, "input[data-section]")) == 2, "a price per section")
    form.find_element(By.NAME, "name").send_keys("Marigold Brass Night")
    form.find_element(By.NAME, "performers").send_keys("Marigold Brass Band")
    lawn = form.find_element(By.CSS_SELECTOR, 'input[data-section="LAWN"]')
    lawn.clear()
    lawn.send_keys("20")
    form.find_element(By.XPATH, ".//button[text()='Create event']").click()
    link = find(m, "#event-form .event-link", "the new event")
    event_id = link.get_attribute("href").rsplit("/", 1)[-1]
    m.find_element(By.XPATH, "//button[text()='Put on sale now']").click()
    wait(m, lambda d: "on sale now" in message(d), "the event put on sale")
    shot(m, "admin")
    event = ok("GET", f"/v1/events/{event_id}")
    assert event["venue_id"] == venue_id and event["name"] == "Marigold Brass Night", event
    assert {s["section"]: s["price"]["amount"] for s in event["sections"]} == {"FLOOR": 5000, "LAWN": 2000}, event
    assert {s["section"]: s["capacity"] for s in event["sections"]} == {"FLOOR": 50, "LAWN": 200}, event

    m.find_element(By.XPATH, "//button[text()='Watch sales']").click()
    held = lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-section="LAWN"] td:nth-of-type(4)').text
    wait(m, lambda d: held(d) == "0", "the sales table")
    ok("POST", f"/v1/events/{event_id}/holds", token("buyer-e"), {"section": "LAWN", "quantity": 3})
    wait(m, lambda d: held(d) == "3", "three held on the lawn, live")
    shot(m, "sales")
    log("(d) venue and event created through the admin pages; sales watched live")

    link = search(b, "marigold", "Marigold Brass Night")
    shot(b, "search-admin-event")
    link.click()
    find(b, 'rect[data-seat="FLOOR-B-6"]', "the new event's seat map")
    find(b, "form.ga", "the lawn's quantity picker")
    lawn = lambda d: [td.text for td in d.find_elements(By.CSS_SELECTOR, 'tr[data-section="LAWN"] td')][2:]
    wait(b, lambda d: lawn(d)[:1] == ["197"], "the lawn's 197 available on the event page")
    assert all(n.isdigit() for n in lawn(b)), lawn(b)
    log("(d) the new event is found by search and opens with its map")
    return m


def stand_in(method, path, body=None):
    """The Stripe stand-in's test controls (`/_stand_in/…`)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(STRIPE_URL + path, data, {"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(request, timeout=15) as r:
        return json.loads(r.read())


def scenario_hosted_page(event):
    """(f) "Pay with Stripe": the browser goes to the provider's hosted page (the stand-in, another
    origin), pays, and comes back to the order's page, which shows the order pending until Stripe's
    webhook arrives (held back by the stand-in until then) and then Confirmed with its ticket, by
    its own polling: the page is never reloaded."""
    eid = event["event_id"]
    stand_in("POST", "/_stand_in/config",
             {"webhook_url": URL + "/v1/payments/stripe/webhook", "defer_webhooks": True})
    s = browser("stripe-buyer")
    sign_in(s, "buyer-s")
    go(s, f"#/events/{eid}")
    seat(s, "FLOOR-D-7").click()
    find(s, "#hold-seats").click()
    find(s, ".hold .countdown", "the hold")
    s.find_element(By.XPATH, "//button[text()='Pay with Stripe']").click()
    wait(s, lambda d: d.current_url.startswith(STRIPE_URL + "/pay/cs_"), "the hosted payment page")
    heading = find(s, "h1", "the hosted page's heading")
    assert heading.text == "Pay 50.00 USD", heading.text
    sessions = stand_in("GET", "/_stand_in/sessions")
    assert len(sessions) == 1, sessions
    order_id = sessions[0]["client_reference_id"]
    assert sessions[0]["success_url"] == f"{URL}/#/orders/{order_id}", sessions[0]
    assert sessions[0]["metadata"] == {"order_id": order_id} == sessions[0]["intent_metadata"], sessions[0]
    shot(s, "stripe-hosted-page")
    log(f"(f) on the hosted page for {order_id}: {heading.text!r}")

    find(s, "#pay", "the Pay button").click()
    wait(s, lambda d: d.current_url == f"{URL}/#/orders/{order_id}", "back on the order's page")
    wait(s, lambda d: (st := visible(d, ".order .status")) and st.text.lower() == "pending payment",
         "the order pending until the webhook")
    assert "Awaiting the payment provider" in message(s), message(s)
    s.execute_script("window.__sameDocument = true")
    assert ok("GET", f"/v1/orders/{order_id}", token("buyer-s"))["status"] == "pending_payment"
    shot(s, "stripe-returned-pending")
    statuses = stand_in("POST", "/_stand_in/deliver")
    assert statuses == [200], f"the webhook answered {statuses}"
    wait(s, lambda d: (st := visible(d, ".order .status")) and st.text.lower() == "confirmed", "a confirmed order")
    qr = wait(s, lambda d: visible(d, "img.qr"), "the ticket's QR code")
    assert "FLOOR row D seat 7" in qr.get_attribute("alt"), qr.get_attribute("alt")
    assert s.execute_script("return window.__sameDocument === true"), "the order page was reloaded"
    order = ok("GET", f"/v1/orders/{order_id}", token("buyer-s"))
    paid = stand_in("GET", "/_stand_in/sessions")[0]
    assert order["status"] == "confirmed" and order["payment_reference"] == paid["payment_intent"], (order, paid)
    assert [t["seat"] for t in order["tickets"]] == ["FLOOR-D-7"], order
    shot(s, "stripe-order-confirmed")
    log("(f) paid on the hosted page; back on the order, confirmed by the webhook without a reload")


def phone_check(driver, event):
    """The event page at a phone's width: no sideways scrolling of the page (the map scrolls in
    its own box), labels still there."""
    driver.set_window_size(PHONE_WIDTH_PX, 812)
    go(driver, f"#/events/{event['event_id']}")
    seat(driver, "FLOOR-D-1")
    width = driver.execute_script("return window.innerWidth")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert width <= PHONE_WIDTH_PX + 20, width
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px"
    shot(driver, "phone-event")
    go(driver, "#/")
    find(driver, ".cards .card")
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the event list scrolls sideways by {overflow} px"
    shot(driver, "phone-events")
    log(f"phone width ({width} px): no sideways scrolling")


def main():
    admin = token("admin-1", "admin")
    venue, prices, event = catalogue(admin)
    current = None
    try:
        current = "a, b"
        a, b = scenario_buy_and_watch(admin, event)
        current = "e"
        scenario_api_error(b, event)
        current = "near me"
        scenario_near_me(b)
        current = "c"
        scenario_waiting_room(admin, venue, prices)
        current = "d"
        scenario_admin(b)
        if STRIPE_URL:
            current = "f"
            scenario_hosted_page(event)
        current = "phone"
        phone_check(a, event)
        current = "csp"
        for d in drivers:
            violations = csp_violations(d)
            assert not violations, f"[{d.label}] Content-Security-Policy violations: {violations}"
    except Exception:
        print(f"FAILED in scenario {current}", file=sys.stderr)
        traceback.print_exc()
        for d in drivers:
            try:
                shot(d, f"FAILED-{d.label}")
                print(f"[{d.label}] at {d.current_url}; message: {message(d)!r}", file=sys.stderr)
                for entry in d.get_log("browser")[-15:]:
                    print(f"[{d.label}] console {entry['level']}: {entry['message']}", file=sys.stderr)
            except Exception as e:  # the browser itself may be what failed
                print(f"[{d.label}] no details: {e}", file=sys.stderr)
        return 1
    finally:
        for d in drivers:
            d.quit()
    print("browser tests: all scenarios passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

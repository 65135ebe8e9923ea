#!/usr/bin/python3
"""The map page (clients/web/index.html) in Debian's Chromium, headless, against a live
nearestd: the page is loaded from the daemon's own GET /, a point is clicked, and the
list the page shows must name the facilities that the line protocol's NEAREST names for
the same point, in the same order, with the same distances.

Driven by Debian's python3-selenium through Debian's chromedriver (/usr/bin/chromedriver,
passed explicitly, so nothing is downloaded); the machine has no network, and Chromium is
started with every background fetch off. Missing Chromium or chromedriver is a failure,
not a skip: scripts/install-deps installs them.

Usage: test_map_page.py --nearestd BIN --dataset DIR --page FILE [--screenshot PNG]
One Chromium and one daemon serve every case (start-up is about 1 s each); the whole
program takes about 10 s.
"""

import argparse
import decimal
import functools
import http.server
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nearestd_fixture import Daemon, LineClient, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,800"]
WAIT_S = 15
M_PER_DEG = 6371008.8 * math.pi / 180

ARGS = None
# Record fields the list does not repeat as "key: value" (shown otherwise, or ids of areas).
NOT_LISTED = {"id", "category", "name", "lat", "lon", "distance_m", "street", "community",
              "serves", "service_area", "catchment"}


def format_distance(m):
    """The page's way of writing a distance (the CLI's, but with JavaScript's rounding:
    Math.round and toFixed round a tie such as 668.5 up, where printf rounds it to even)."""
    def fixed(x, places):
        return str(decimal.Decimal(x).quantize(decimal.Decimal(1).scaleb(-places),
                                               rounding=decimal.ROUND_HALF_UP))
    if m < 999.5:
        return fixed(max(m, 0), 0) + " m"
    if m < 99995:
        return fixed(m / 1000, 2) + " km"
    return fixed(m / 1000, 1) + " km"


class MapPageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
        if missing:
            raise RuntimeError("missing %s: run scripts/install-deps (Debian packages "
                               "chromium, chromium-driver, python3-selenium)"
                               % ", ".join(missing))
        # Imported here so that a missing python3-selenium fails the same way.
        global webdriver, By, Keys, Select, ActionChains, ScrollOrigin, WebDriverWait
        from selenium import webdriver
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import Select, WebDriverWait
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
        from selenium.webdriver.chrome.service import Service

        cls.daemon = Daemon(ARGS.nearestd, ARGS.dataset).start()
        cls.proto = LineClient(cls.daemon.line_port)
        cls.profile = tempfile.mkdtemp(prefix="nearestd-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument("--user-data-dir=" + cls.profile)
        cls.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER),
                                      options=options)
        cls.driver.set_page_load_timeout(WAIT_S)

    @classmethod
    def tearDownClass(cls):
        driver = getattr(cls, "driver", None)
        if driver is not None:
            driver.quit()
        if getattr(cls, "profile", None):
            shutil.rmtree(cls.profile, ignore_errors=True)
        if getattr(cls, "proto", None):
            cls.proto.close()
        daemon = getattr(cls, "daemon", None)
        if daemon is not None:
            log = daemon.log()
            status = daemon.stop()
            if status != 0:
                raise AssertionError("nearestd exited with %r:\n%s" % (status, log))

    # ---- helpers -------------------------------------------------------------------

    def load(self, url=None):
        self.driver.get(url or self.daemon.http_base + "/")
        self.wait().until(
            lambda d: d.find_element(By.ID, "map").get_attribute("data-ready") == "true"
            or d.find_element(By.ID, "status").get_attribute("data-state") == "error")
        status = self.driver.find_element(By.ID, "status")
        self.assertEqual(status.get_attribute("data-state"), "ready", status.text)
        return self.driver.find_element(By.ID, "map")

    def wait(self):
        return WebDriverWait(self.driver, WAIT_S, poll_frequency=0.05)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def seq(self):
        return int(self.driver.find_element(By.ID, "results").get_attribute("data-seq"))

    def wait_query(self, before):
        self.wait().until(lambda d: self.seq() > before)

    def choose(self, category=None, k=None, open_now=None):
        if category is not None:
            Select(self.driver.find_element(By.ID, "query-category")).select_by_value(category)
        if k is not None:
            box = self.driver.find_element(By.ID, "k")
            box.clear()
            box.send_keys(str(k))
        if open_now is not None:
            box = self.driver.find_element(By.ID, "open-now")
            if box.is_selected() != open_now:
                box.click()

    def click_map(self, svg, dx, dy):
        """Clicks (dx, dy) pixels from the map's centre; returns the page's answer:
        (lat string, lon string, [(id, distance_m, text)...], request path)."""
        before = self.seq()
        ActionChains(self.driver, duration=0).move_to_element_with_offset(svg, dx, dy) \
            .click().perform()
        self.wait_query(before)
        marker = self.driver.find_element(By.ID, "click-marker")
        point = self.driver.find_element(By.ID, "query-point")
        lat, lon = marker.get_attribute("data-lat"), marker.get_attribute("data-lon")
        self.assertEqual((point.get_attribute("data-lat"), point.get_attribute("data-lon")),
                         (lat, lon))
        # The marker sits where the mouse clicked.
        centre = self.js("var r = arguments[0].getBoundingClientRect(), m ="
                         " document.getElementById('click-marker').getBoundingClientRect();"
                         " return [m.x + m.width / 2 - (r.x + r.width / 2),"
                         " m.y + m.height / 2 - (r.y + r.height / 2)];", svg)
        self.assertLess(abs(centre[0] - dx), 1.5, centre)
        self.assertLess(abs(centre[1] - dy), 1.5, centre)
        request = self.driver.find_element(By.ID, "results").get_attribute("data-request")
        return lat, lon, self.listed(), request

    def listed(self):
        """The list's items: [(id, distance_m, text)...] in the page's order."""
        items = self.js("return Array.from(document.querySelectorAll('#results > li'))"
                        ".map(function (li) { return [li.getAttribute('data-id'),"
                        " li.getAttribute('data-distance-m'), li.innerText]; });")
        return [(pid, float(distance), text) for pid, distance, text in items]

    def protocol_nearest(self, category, lat, lon, k, open_now=False):
        """The line protocol's records for the same query, as dicts."""
        line = "NEAREST %s %s %s K %d" % (category, lat, lon, k)
        if open_now:
            line += " OPEN now"
        reply = self.proto.ask(line)
        self.assertTrue(reply["ok"], reply)
        return reply["results"]

    def assert_same_answer(self, listed, expected):
        """The page's list names the protocol's records in its order, each with its name,
        id, distance (as the page writes it) and readable attributes."""
        self.assertEqual([i for i, _, _ in listed], [r["id"] for r in expected])
        for (pid, pdist, text), r in zip(listed, expected):
            self.assertEqual(pdist, r["distance_m"], pid)
            self.assertIn(r["name"], text)
            self.assertIn(r["id"], text)
            self.assertIn(format_distance(r["distance_m"]), text)
            for key, value in r.items():
                if key in NOT_LISTED or value is None or isinstance(value, (list, dict)):
                    continue
                if isinstance(value, bool):
                    value = "yes" if value else "no"
                self.assertIn("%s: %s" % (key.replace("_", " "), value), text)

    def visible_by_category(self):
        return self.js("var n = {}; document.querySelectorAll('circle.facility')"
                       ".forEach(function (c) { var k = c.getAttribute('data-category');"
                       " n[k] = (n[k] || 0) + (c.getBoundingClientRect().width > 0 ? 1 : 0); });"
                       " return n;")

    # ---- cases -----------------------------------------------------------------------

    def test_page_names_no_url_and_loads_only_from_the_daemon(self):
        with open(ARGS.page, encoding="utf-8") as f:
            text = f.read()
        self.assertIsNone(re.search(r"(?i)\b(?:https?|wss?|ftp):|url\(|@import|<link|"
                                    r"<img|<iframe|\bsrc\s*=", text))
        self.load()
        origin = self.daemon.http_base
        resources = self.js("return performance.getEntriesByType('resource')"
                            ".map(function (e) { return e.name; });")
        self.assertGreaterEqual(len(resources), 4)  # categories, 2 x areas, inarea
        for name in resources:
            self.assertTrue(name.startswith(origin + "/v1/"), name)

    def test_draws_the_district_streets_and_every_facility(self):
        self.load()
        expected = self.proto.ask("INAREA * district")
        self.assertTrue(expected["ok"])
        drawn = self.js("return Array.from(document.querySelectorAll('circle.facility'))"
                        ".map(function (c) { return [c.getAttribute('data-id'),"
                        " c.getAttribute('data-category')]; });")
        self.assertEqual(sorted(map(tuple, drawn)),
                         sorted((r["id"], r["category"]) for r in expected["results"]))
        for kind, selector in (("district", "path.district"), ("street", "path.street")):
            areas = self.proto.ask("AREAS " + kind)
            self.assertTrue(areas["ok"])
            ids = self.js("return Array.from(document.querySelectorAll(arguments[0]))"
                          ".map(function (p) { return p.getAttribute('data-id'); });",
                          selector)
            self.assertEqual(sorted(ids), sorted(row[0] for row in areas["results"]))
        # The outlines are really drawn: the district fills most of the map.
        box = self.js("var b = document.querySelector('path.district').getBoundingClientRect(),"
                      " m = document.getElementById('map').getBoundingClientRect();"
                      " return [b.width / m.width, b.height / m.height];")
        self.assertGreater(max(box), 0.8)

    def test_click_lists_the_facilities_the_protocol_names_nearest(self):
        svg = self.load()
        cases = [("meal_point", 5, 40, -30), ("school", 3, -150, 90),
                 ("elder_care", 10, 120, 110), ("*", 7, -60, -120), ("parking", 1, 0, 0)]
        for category, k, dx, dy in cases:
            with self.subTest(category=category, k=k):
                self.choose(category=category, k=k)
                lat, lon, listed, request = self.click_map(svg, dx, dy)
                path, _, query = request.partition("?")
                self.assertEqual(path, "/v1/nearest")
                self.assertEqual(urllib.parse.parse_qs(query, keep_blank_values=True),
                                 {"category": [category], "lat": [lat], "lon": [lon],
                                  "k": [str(k)]})
                expected = self.protocol_nearest(category, lat, lon, k)
                self.assertEqual(len(expected), k)
                self.assert_same_answer(listed, expected)
                lines = self.js("return Array.from(document.querySelectorAll("
                                "'#layer-lines line')).map(function (l) {"
                                " return l.getAttribute('data-id'); });")
                self.assertEqual(lines, [r["id"] for r in expected])
                labels = self.js("return Array.from(document.querySelectorAll("
                                 "'text.result-label')).map(function (t) {"
                                 " return t.textContent; });")
                self.assertEqual(labels, ["%d. %s" % (n + 1, format_distance(r["distance_m"]))
                                          for n, r in enumerate(expected)])
                self.assertEqual(self.driver.find_element(By.ID, "status")
                                 .get_attribute("data-state"), "ready")

    def test_zoom_and_pan_keep_clicks_on_the_right_spot(self):
        svg = self.load()

        def positions():
            return self.js("var m = document.getElementById('map').getBoundingClientRect(),"
                           " out = {}; document.querySelectorAll('circle.facility')"
                           ".forEach(function (c) { var b = c.getBoundingClientRect();"
                           " out[c.getAttribute('data-id')] = [b.x + b.width / 2 - m.x,"
                           " b.y + b.height / 2 - m.y]; }); return out;")

        def spread(pos):
            xs = [p[0] for p in pos.values()]
            return max(xs) - min(xs)

        p0 = positions()
        self.driver.find_element(By.ID, "zoom-in").click()
        p1 = positions()
        self.assertAlmostEqual(spread(p1) / spread(p0), 1.5, delta=0.01)
        ActionChains(self.driver).scroll_from_origin(
            ScrollOrigin.from_element(svg), 0, -200).perform()
        self.wait().until(lambda d: spread(positions()) > spread(p1))
        self.driver.find_element(By.ID, "zoom-out").click()
        p2 = positions()
        ActionChains(self.driver).move_to_element_with_offset(svg, 0, 0).click_and_hold() \
            .move_by_offset(40, 20).move_by_offset(40, 30).release().perform()
        p3 = positions()
        some = next(iter(p2))
        self.assertAlmostEqual(p3[some][0] - p2[some][0], 80, delta=1)
        self.assertAlmostEqual(p3[some][1] - p2[some][1], 50, delta=1)
        # A drag is not a click: no query was made.
        self.assertEqual(self.seq(), 0)

        # Click exactly on a school marker near the centre: the nearest school is that
        # one, within about a pixel (in metres at this zoom).
        rect = self.js("var r = arguments[0].getBoundingClientRect();"
                       " return [r.width, r.height];", svg)
        schools = self.js("return Array.from(document.querySelectorAll("
                          "'circle.facility[data-category=school]')).map(function (c) {"
                          " return c.getAttribute('data-id'); });")
        target = min(schools, key=lambda i: (p3[i][0] - rect[0] / 2) ** 2
                     + (p3[i][1] - rect[1] / 2) ** 2)
        self.choose(category="school", k=3)
        dx = round(p3[target][0] - rect[0] / 2)
        dy = round(p3[target][1] - rect[1] / 2)
        lat, lon, listed, _ = self.click_map(svg, dx, dy)
        ids = [i for i, _, _ in listed]
        # Metres per pixel, from the westmost and eastmost facilities' known longitudes
        # and their positions on the screen.
        coords = self.js("var o = {}; document.querySelectorAll('circle.facility')"
                         ".forEach(function (c) { o[c.getAttribute('data-id')] ="
                         " [+c.getAttribute('data-lat'), +c.getAttribute('data-lon')]; });"
                         " return o;")
        west = min(p3, key=lambda i: p3[i][0])
        east = max(p3, key=lambda i: p3[i][0])
        lat_mid = math.radians((coords[west][0] + coords[east][0]) / 2)
        metres_per_px = ((coords[east][1] - coords[west][1]) * math.cos(lat_mid) * M_PER_DEG
                         / (p3[east][0] - p3[west][0]))
        self.assertIn(target, ids)
        self.assertLess(listed[0][1], 2.5 * metres_per_px + 1)
        self.assertLess(dict((i, d) for i, d, _ in listed)[target], 2.5 * metres_per_px + 1)
        self.assert_same_answer(listed, self.protocol_nearest("school", lat, lon, 3))

    def test_category_toggle_hides_and_shows_its_markers(self):
        self.load()
        counts = self.proto.ask("CATEGORIES")
        totals = {row[0]: int(row[1]) for row in counts["results"]}
        self.assertEqual(self.visible_by_category(), totals)
        self.driver.find_element(By.ID, "show-school").click()
        hidden = dict(totals, school=0)
        self.assertEqual(self.visible_by_category(), hidden)
        self.driver.find_element(By.ID, "show-parking").click()
        self.assertEqual(self.visible_by_category(), dict(hidden, parking=0))
        self.driver.find_element(By.ID, "show-school").click()
        self.driver.find_element(By.ID, "show-parking").click()
        self.assertEqual(self.visible_by_category(), totals)

    def test_open_now_switch_asks_again_with_open_now(self):
        svg = self.load()
        self.choose(category="meal_point", k=8, open_now=False)
        lat, lon, listed, request = self.click_map(svg, 30, 20)
        self.assertNotIn("open", urllib.parse.parse_qs(request.partition("?")[2]))
        for open_now in (True, False, True):
            with self.subTest(open_now=open_now):
                # "now" moves: if the minute turned while asking (the protocol's answers
                # before and after differ), ask again by clicking the same spot.
                for attempt in range(3):
                    before = self.protocol_nearest("meal_point", lat, lon, 8, open_now)
                    if attempt == 0:
                        seq = self.seq()
                        self.choose(open_now=open_now)
                        self.wait_query(seq)
                        listed = self.listed()
                        request = self.driver.find_element(By.ID, "results") \
                            .get_attribute("data-request")
                    else:
                        _, _, listed, request = self.click_map(svg, 30, 20)
                    after = self.protocol_nearest("meal_point", lat, lon, 8, open_now)
                    if before == after:
                        break
                query = urllib.parse.parse_qs(request.partition("?")[2])
                self.assertEqual(query.get("open"), ["now"] if open_now else None, request)
                self.assertEqual((query["lat"], query["lon"]), ([lat], [lon]))
                self.assert_same_answer(listed, after)

    def test_changing_category_or_k_asks_again_for_the_same_point(self):
        svg = self.load()
        self.choose(category="meal_point", k=3)
        lat, lon, listed, _ = self.click_map(svg, -70, 40)
        self.assert_same_answer(listed, self.protocol_nearest("meal_point", lat, lon, 3))
        seq = self.seq()
        self.choose(category="elder_care")
        self.wait_query(seq)
        self.assert_same_answer(self.listed(), self.protocol_nearest("elder_care", lat, lon, 3))
        seq = self.seq()
        box = self.driver.find_element(By.ID, "k")
        box.send_keys(Keys.BACKSPACE, "6", Keys.ENTER)
        self.wait().until(lambda d: len(self.listed()) == 6)
        self.assertGreater(self.seq(), seq)
        self.assert_same_answer(self.listed(), self.protocol_nearest("elder_care", lat, lon, 6))
        marker = self.driver.find_element(By.ID, "click-marker")
        self.assertEqual((marker.get_attribute("data-lat"), marker.get_attribute("data-lon")),
                         (lat, lon))

    def test_hovering_an_answer_highlights_its_line_and_marker(self):
        svg = self.load()
        self.choose(category="school", k=4)
        _, _, listed, _ = self.click_map(svg, 50, 50)
        items = self.driver.find_elements(By.CSS_SELECTOR, "#results > li")
        focused = ("return Array.from(document.querySelectorAll('.focus')).map("
                   "function (e) { return e.tagName + ' ' + e.getAttribute('data-id'); })"
                   ".sort();")
        self.assertEqual(len(items), 4)
        for item, (pid, _, _) in zip(items, listed):
            ActionChains(self.driver, duration=0).move_to_element(item).perform()
            self.assertEqual(self.js(focused), sorted(["circle " + pid, "line " + pid]))
        ActionChains(self.driver, duration=0).move_to_element(svg).perform()
        self.assertEqual(self.js(focused), [])

    def test_a_page_opened_from_a_file_works_with_api_and_says_it_needs_it(self):
        url = "file://" + os.path.abspath(ARGS.page)
        self.driver.get(url)
        status = self.driver.find_element(By.ID, "status")
        self.wait().until(lambda d: status.get_attribute("data-state") == "error")
        self.assertIn("?api=", status.text)
        svg = self.load(url + "?api=" + self.daemon.http_base)
        self.choose(category="parking", k=2)
        lat, lon, listed, _ = self.click_map(svg, 25, -45)
        self.assert_same_answer(listed, self.protocol_nearest("parking", lat, lon, 2))

    def test_an_unreachable_api_is_reported(self):
        port = free_port()
        self.driver.get(self.daemon.http_base + "/?api=http://127.0.0.1:%d" % port)
        status = self.driver.find_element(By.ID, "status")
        self.wait().until(lambda d: status.get_attribute("data-state") == "error")
        self.assertIn("cannot reach the API at http://127.0.0.1:%d" % port, status.text)
        self.assertEqual(self.driver.find_element(By.ID, "map").get_attribute("data-ready"),
                         "false")

    def test_api_errors_show_in_the_status_line(self):
        svg = self.load()
        self.choose(category="meal_point", k=3)
        _, _, listed, _ = self.click_map(svg, 0, 0)
        self.assertEqual(len(listed), 3)
        self.choose(k=0)
        lat, lon, listed, request = self.click_map(svg, 10, 10)
        self.assertIn("k=0", request)
        status = self.driver.find_element(By.ID, "status")
        self.assertEqual(status.get_attribute("data-state"), "error")
        reply = self.proto.ask("NEAREST meal_point %s %s K 0" % (lat, lon))
        self.assertFalse(reply["ok"])
        self.assertIn(reply["error"]["code"], status.text)
        self.assertIn(reply["error"]["message"], status.text)
        self.assertEqual(listed, [])
        self.assertTrue(status.is_displayed())

    def test_api_parameter_points_a_page_from_another_origin_at_the_daemon(self):
        handler = functools.partial(QuietHandler, directory=os.path.dirname(ARGS.page))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            page = "http://127.0.0.1:%d/%s?api=%s" % (
                server.server_address[1], os.path.basename(ARGS.page), self.daemon.http_base)
            svg = self.load(page)
            self.choose(category="doctor_team", k=4)
            lat, lon, listed, _ = self.click_map(svg, -20, 40)
            self.assert_same_answer(listed, self.protocol_nearest("doctor_team", lat, lon, 4))
            resources = self.js("return performance.getEntriesByType('resource')"
                                ".map(function (e) { return e.name; });")
            self.assertIn(self.daemon.http_base + "/v1/nearest?category=doctor_team&lat=%s"
                          "&lon=%s&k=4" % (lat, lon), resources)
        finally:
            server.shutdown()
            server.server_close()

    def test_screenshot_after_a_click(self):
        """Leaves a PNG of the page after a click when --screenshot is given (for a
        person to look at); checks that Chromium rendered a non-empty image."""
        svg = self.load()
        self.choose(category="meal_point", k=5, open_now=False)
        self.click_map(svg, 40, -30)
        png = self.driver.get_screenshot_as_png()
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertGreater(len(png), 10000)
        if ARGS.screenshot:
            with open(ARGS.screenshot, "wb") as f:
                f.write(png)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--nearestd", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--page", required=True)
    parser.add_argument("--screenshot")
    ARGS, rest = parser.parse_known_args()
    started = time.monotonic()
    program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
    result = program.result
    failed = len(result.failures) + len(result.errors)
    print("browser_map_page: %.1f s" % (time.monotonic() - started))
    print("%d passed, %d failed" % (max(result.testsRun - failed, 0), failed))
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)


if __name__ == "__main__":
    main()

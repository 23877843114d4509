"""Drives Debian's chromium (headless, through Debian's chromedriver and
Selenium) against the console, and prints what the page shows as one JSON
object for tests/tests/console.rs to assert on.

    console_browser.py URL formation        rows, charts, a trace's waterfall
    console_browser.py URL r14 DYNO PNG     waits for DYNO's R14 badge, saves a screenshot

No browser is downloaded: chromium and chromedriver come from apt
(scripts/lib.sh ensure_apt chromium chromium-driver); Selenium Manager is
bypassed by naming the driver.
"""

import json
import struct
import sys
import zlib

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1500,1300", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def console_errors(driver):
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def rows(driver):
    out = []
    for tr in driver.find_elements(By.CSS_SELECTOR, "#formation tbody tr[data-dyno]"):
        dyno = tr.get_attribute("data-dyno")
        chart = tr.find_elements(By.CSS_SELECTOR, "svg.memory-chart circle.point")
        out.append({
            "dyno": dyno,
            "state": tr.find_elements(By.CSS_SELECTOR, "td")[1].text,
            "memory": float(tr.get_attribute("data-memory") or 0),
            "memoryText": tr.find_element(By.CSS_SELECTOR, "td.memory").text,
            "error": tr.get_attribute("data-error"),
            "chartPoints": len(chart),
        })
    return out


def formation(url):
    driver = browser()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#formation tbody tr[data-dyno]")) >= 3)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#latest tr[data-trace]"))
        # A server trace of the shop: its root is a `web` request with children.
        row = driver.find_element(By.CSS_SELECTOR, "#latest tr[data-trace]")
        trace_id = row.get_attribute("data-trace")
        row.click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#waterfall .span-row"))
        spans = [
            {"span_id": s.get_attribute("data-span-id"), "parent_id": s.get_attribute("data-parent-id"),
             "label": s.find_element(By.CSS_SELECTOR, ".label").text}
            for s in driver.find_elements(By.CSS_SELECTOR, "#waterfall .span-row")
        ]
        # A span's tags open on a click.
        driver.find_element(By.CSS_SELECTOR, "#waterfall .span-row").click()
        detail = driver.find_element(By.CSS_SELECTOR, "#waterfall .span-detail.open").text
        result = {
            "rows": rows(driver),
            "trace": trace_id,
            "spans": spans,
            "detail": detail,
            "services": len(driver.find_elements(By.CSS_SELECTOR, "#services tbody tr[data-service]")),
            "router": driver.find_element(By.CSS_SELECTOR, "#router").text,
            "logs": driver.find_element(By.CSS_SELECTOR, "#logs").text,
            "sinks": driver.find_element(By.CSS_SELECTOR, "#sinks").text,
            "errors": console_errors(driver),
        }
    finally:
        driver.quit()
    print(json.dumps(result))


def png_distinct_bytes(path):
    """Distinct byte values of the decoded pixel rows: a blank page has a handful."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


def r14(url, dyno, png):
    driver = browser()
    try:
        driver.get(url)
        selector = f'#formation tbody tr[data-dyno="{dyno}"][data-error="R14"]'
        WebDriverWait(driver, 90).until(lambda d: d.find_elements(By.CSS_SELECTOR, selector))
        badge = driver.find_element(By.CSS_SELECTOR, selector + " .error-badge").text
        # Let the charts of the same poll settle, then picture the page.
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#latest tr[data-trace]"))
        driver.find_element(By.CSS_SELECTOR, "#latest tr[data-trace]").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#waterfall .span-row"))
        driver.save_screenshot(png)
        result = {"rows": rows(driver), "badge": badge, "distinct": png_distinct_bytes(png),
                  "errors": console_errors(driver)}
    finally:
        driver.quit()
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[2] == "formation":
        formation(sys.argv[1])
    else:
        r14(sys.argv[1], sys.argv[3], sys.argv[4])

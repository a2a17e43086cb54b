"""Each role's main page at tablet width: labelled controls, readable contrast, no sideways
scrolling, and the keyboard reaches what the mouse does."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests import live
from tests.e2e.conftest import TRACK_SOCKETS, sign_in

pytestmark = pytest.mark.e2e

TABLET = {"width": 768, "height": 1024}

# WCAG 2.1 contrast of every visible text element against the first opaque background behind
# it; unlabelled form controls and nameless buttons.
AUDIT_PAGE = """() => {
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map((x) => parseFloat(x)); return { rgb: p.slice(0, 3), a: p.length > 3 ? p[3] : 1 }; };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a >= 0.99) return c.rgb;
    }
    return [255, 255, 255];
  };
  const visible = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const lowContrast = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !visible(el)) continue;
    const s = getComputedStyle(el);
    const fg = parse(s.color); if (!fg) continue;
    const l1 = lum(fg.rgb), l2 = lum(background(el));
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const large = parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && parseInt(s.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) lowContrast.push(`${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 40)}" ${ratio.toFixed(2)}`);
  }
  const unlabelled = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter((el) => visible(el) && !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
    .map((el) => el.outerHTML.slice(0, 80));
  const nameless = [...document.querySelectorAll('button, a[href]')]
    .filter((el) => visible(el) && !(el.textContent.trim() || el.getAttribute('aria-label') || el.getAttribute('title')))
    .map((el) => el.outerHTML.slice(0, 80));
  return { lowContrast, unlabelled, nameless,
           sideways: document.documentElement.scrollWidth > window.innerWidth + 1 };
}"""


@pytest.fixture
def tablet_page(browser: Browser, e2e_server: live.Server) -> Any:
    context = browser.new_context(base_url=e2e_server.base_url, viewport=TABLET)  # type: ignore[arg-type]
    context.add_init_script(TRACK_SOCKETS)
    yield context.new_page()
    context.close()


@pytest.mark.parametrize(
    ("username", "path"),
    [
        ("clinician", "/ask/"),
        ("guideline-admin", "/guidelines/"),
        ("auditor", "/audit/"),
        ("guideline-admin", "/quality/"),
    ],
)
def test_main_pages_are_labelled_readable_and_fit_a_tablet(
    tablet_page: Page, demo_password: str, screenshots, username: str, path: str
) -> None:  # type: ignore[no-untyped-def]
    page = tablet_page
    sign_in(page, username, demo_password)
    page.goto(path)
    report = page.evaluate(AUDIT_PAGE)
    name = username if path != "/quality/" else f"{username}-quality"
    page.screenshot(path=screenshots / f"tablet-{name}.png", full_page=True)
    assert report["unlabelled"] == [], report["unlabelled"]
    assert report["nameless"] == [], report["nameless"]
    assert report["lowContrast"] == [], report["lowContrast"]
    assert not report["sideways"], "the page scrolls sideways at tablet width"


def test_the_keyboard_reaches_the_question_and_the_ask_button(
    tablet_page: Page, demo_password: str
) -> None:
    page = tablet_page
    sign_in(page, "clinician", demo_password)
    page.get_by_label("Clinical question").focus()
    page.keyboard.type("Which patients need anticoagulation?")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.textContent.trim()")
    assert focused == "Ask"
    # Focus is visible: the focused button has an outline or a box shadow.
    style = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return s.outlineStyle + ' ' + s.outlineWidth + ' ' + s.boxShadow; }"
    )
    assert "none 0px none" not in style, style

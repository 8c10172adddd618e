"""The web page in headless Chromium: upload a clip, synthesize, and get playable audio.

Needs Debian's `chromium` and `chromium-driver` (apt-get install -y chromium chromium-driver);
skips with the reason when they are missing.
"""
from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.slow

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not CHROMIUM or not DRIVER:
        pytest.skip("chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_synthesize_and_play(browser, tmp_path, tiny_bundle, helpers) -> None:
    app = helpers.make_app(tmp_path, tiny_bundle, warmup=False)
    ref = helpers.voice_dir / "en_slt" / "ref.flac"
    with helpers.live_server(app) as (_, url):
        browser.get(url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: d.find_element(By.ID, "random-banner").is_displayed())
        assert "noise" in browser.find_element(By.ID, "random-banner").text

        browser.find_element(By.ID, "voice-file").send_keys(str(ref))
        browser.find_element(By.ID, "voice-name").send_keys("Browser voice")
        Select(browser.find_element(By.ID, "voice-lang")).select_by_value("en")
        browser.find_element(By.ID, "voice-transcript").send_keys((ref.parent / "ref.txt").read_text().strip())
        browser.find_element(By.ID, "upload-btn").click()
        wait.until(lambda d: "Created voice" in d.find_element(By.ID, "upload-status").text
                   or "error" in d.find_element(By.ID, "upload-status").get_attribute("class"))
        assert "Created voice" in browser.find_element(By.ID, "upload-status").text
        voice_ids = [v.id for v in app.state.gsv.voices.list("anonymous")]
        assert len(voice_ids) == 1
        assert Select(browser.find_element(By.ID, "voice-select")).first_selected_option.get_attribute(
            "value") == voice_ids[0]

        text = browser.find_element(By.ID, "tts-text")
        text.clear()
        text.send_keys("Hello from the browser.")
        Select(browser.find_element(By.ID, "tts-lang")).select_by_value("en")
        browser.find_element(By.ID, "speak-btn").click()
        wait.until(lambda d: d.execute_script(
            "const a = document.getElementById('player');"
            "return a.src.startsWith('blob:') && a.readyState >= 1 && a.duration > 0;"))
        duration = browser.execute_script("return document.getElementById('player').duration")
        error = browser.execute_script("return document.getElementById('player').error")
        status = browser.find_element(By.ID, "speak-status").text
        assert error is None and duration > 0.1
        assert "s of audio" in status and browser.find_element(By.ID, "download-link").is_displayed()


_PLAYER_SCRIPT = """
const done = arguments[arguments.length - 1];
const p = new StreamPlayer(32000);
if (!p.ctx) { done(null); return; }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  await p.ctx.resume();
  const out = [];
  const piece = () => {
    const now = p.ctx.currentTime, start = p.schedule(0.1);
    out.push({ delay: start - now, start: start, underruns: p.underruns, lead: p.lead });
  };
  piece(); piece();                      // the first piece, then one right behind it
  for (let i = 0; i < 5; i++) {  // each piece arrives 150 ms after the audio before it ran out
    await sleep((p.at - p.ctx.currentTime) * 1000 + 150);
    piece();
  }
  done(out);
})();
"""


def test_stream_player_buffers_more_after_each_underrun(browser, tmp_path, tiny_bundle, helpers) -> None:
    """Pieces that arrive in time play back to back; after an underrun the next piece starts
    `lead` ahead, and the lead doubles per underrun up to 0.8 s (fewer, longer pauses)."""
    app = helpers.make_app(tmp_path, tiny_bundle, warmup=False)
    with helpers.live_server(app) as (_, url):
        browser.get(url + "/")
        browser.set_script_timeout(30)
        out = browser.execute_async_script(_PLAYER_SCRIPT)
    if out is None:
        pytest.skip("no AudioContext in this browser")
    first, second, *late = out
    assert first["delay"] == pytest.approx(0.05, abs=0.02) and first["underruns"] == 0
    assert second["start"] == pytest.approx(first["start"] + 0.1, abs=1e-6) and second["underruns"] == 0
    assert [p["underruns"] for p in late] == [1, 2, 3, 4, 5]
    assert [p["lead"] for p in late] == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.8])
    for p in late:
        assert p["delay"] == pytest.approx(p["lead"], abs=0.02)

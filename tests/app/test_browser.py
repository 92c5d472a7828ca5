"""The explorer in a real browser: the system's headless Chromium driven by selenium (marked ``browser``;
``.ci/run`` runs them with ``python3 -m pytest -q -m browser``). A toy generator keeps them fast."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import DATA
from explorer_fixtures import app_parts, projection_folder, toy_g, toy_prior  # noqa: F401
from loopback import free_port, loopback_only, wait_for  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def server(app_parts, loopback_only):  # noqa: F811
    import uvicorn

    from latentkit.app.server import create_app

    port = free_port()
    config = uvicorn.Config(create_app(*app_parts, max_upload_bytes=2_000_000), host="127.0.0.1", port=port,
                            log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for(f"http://127.0.0.1:{port}/api/info", timeout=30)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path, loopback_only):  # noqa: F811
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.downloads = downloads
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _until(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _view(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'nav button[data-view="{name}"]').click()


def test_slider_changes_the_image(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server + "/")
    sliders = browser.find_elements(By.CSS_SELECTOR, 'input[type="range"]')
    assert len(sliders) >= 2 + 2 + 1 + 4  # psi, tau; layer range; position; 4 components
    image = browser.find_element(By.ID, "seeds-truncated")
    first = _until(lambda: image.get_attribute("src"), what="the first render")
    assert first.startswith("data:image/png")
    browser.find_element(By.ID, "seeds-psi").send_keys(Keys.ARROW_LEFT * 6)  # psi 0.7 -> 0.4, a real key press
    _until(lambda: image.get_attribute("src") != first, what="the image to change")
    beyond = browser.find_element(By.ID, "seeds-beyond").text
    assert "principal components of v beyond tau" in beyond

    _view(browser, "edit")
    edited = browser.find_element(By.ID, "edit-image")
    start = _until(lambda: edited.get_attribute("src"), what="the edit render")
    browser.find_element(By.CSS_SELECTOR, "#edit-sliders input").send_keys(Keys.ARROW_RIGHT * 20)
    _until(lambda: edited.get_attribute("src") != start, what="the edited image to change")


def test_upload_projects_and_joins_the_list(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    _view(browser, "projections")
    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#latent-table tbody tr")  # noqa: E731
    _until(lambda: len(rows()) == 2, what="the folder's two projections")
    assert "steps" in browser.find_element(By.ID, "upload-note").text
    browser.find_element(By.ID, "upload-file").send_keys(str(DATA / "photos" / "astronaut.jpg"))
    _until(lambda: len(rows()) == 3, what="the projection of the upload")
    assert rows()[-1].text.startswith("upload000-astronaut")
    assert "done" in browser.find_element(By.ID, "upload-status").text

    junk = tmp_path / "notes.png"
    junk.write_text("this is not an image")
    browser.find_element(By.ID, "upload-file").send_keys(str(junk))
    error = browser.find_element(By.ID, "error")
    _until(lambda: error.is_displayed() and "not accepted" in error.text, what="the refusal in the page")
    assert len(rows()) == 3


def test_download_a_video(server, browser):
    import imageio.v3 as iio
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/")
    _view(browser, "interp")
    image = browser.find_element(By.ID, "interp-image")
    first = _until(lambda: image.get_attribute("src"), what="the interpolation render")
    browser.find_element(By.ID, "interp-position").send_keys(Keys.ARROW_RIGHT * 10)
    _until(lambda: image.get_attribute("src") != first, what="the position to move the image")
    _view(browser, "export")
    Select(browser.find_element(By.ID, "export-view")).select_by_value("interp")
    browser.find_element(By.ID, "export-video").click()
    video = _until(lambda: [p for p in Path(browser.downloads).glob("*.mp4")], what="the downloaded video")[0]
    frames = iio.imread(video)
    assert frames.shape == (48, 16, 16, 3) and frames[0].std() > 0

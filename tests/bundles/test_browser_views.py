"""Real-browser checks (headless Debian chromium + chromium-driver, driven by selenium; one browser for the
module): the MLflow UI over a store a tiny training wrote shows the validation overlays among the run's
artifacts, report.html opened from disk shows its tables and embedded pictures, and the lite_medsam bundle's
evaluation of real RGB images (the shared white blood cells) draws every case in its report.html."""

from __future__ import annotations

import base64
import json
import re

import cv2
import numpy as np
import pytest
import torch
from conftest import CHROMEDRIVER, CHROMIUM, NO_CHROMIUM, REPO, SHARED, headless_chromium

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason=NO_CHROMIUM,
    ),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium (fresh profile) for the module's checks."""
    driver = headless_chromium(tmp_path_factory.mktemp("chromium_profile"))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, what: str, timeout: float = 120):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text
        pytest.fail(f"{what} did not show within {timeout} s; the page says:\n{body[:3000]}")


def test_mlflow_ui_lists_the_validation_overlays_of_a_tiny_training(browser, tracked_torchrun, mlflow_server):
    from mlflow import MlflowClient

    run = tracked_torchrun(REPO / "bundles" / "medsam")  # the conformance test's tracked training, shared
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name(run.experiment)
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    pictures = [a.path for a in client.list_artifacts(mlflow_run.info.run_id, "overlays/epoch_001")]
    assert pictures, "no overlays logged"
    # the run's artifacts page with the first overlay selected: the tree opens overlays/epoch_001
    browser.get(
        f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs/{mlflow_run.info.run_id}/artifacts/{pictures[0]}"
    )
    names = [p.rsplit("/", 1)[-1] for p in pictures]

    def tree_lists_overlays(driver):
        text = driver.find_element("tag name", "body").text
        return "epoch_001" in text and all(n in text for n in names)

    wait_for(browser, tree_lists_overlays, f"the artifact tree with {names}")
    loaded = "return [...document.images].filter(i => i.src.startsWith('blob:') && i.naturalWidth > 0).length"
    wait_for(browser, lambda d: d.execute_script(loaded) > 0, "the selected overlay's preview image")


def test_report_html_from_disk_shows_its_tables_and_pictures(browser, tmp_path):
    from ignite.engine import Engine, Events

    from monaiseg.handlers import EvaluationReport

    def case(i: int) -> dict:
        label = torch.zeros(1, 40, 32)
        label[0, 8:20, 8:20] = 1
        pred = torch.roll(label, i, dims=1)
        return {
            "image": torch.rand(1, 40, 32),
            "pred": torch.cat([1 - pred, pred]),
            "label": torch.cat([1 - label, label]),
        }

    engine = Engine(lambda e, batch: batch)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: setattr(e.state, "metrics", {"val_mean_dice": 0.7}))
    report = EvaluationReport(tmp_path / "report.html", label_names=["organ"], config={"learning_rate": 1e-4})
    report.attach(engine)
    engine.run([[case(i)] for i in range(8)], max_epochs=1)

    browser.get(report.filename.as_uri())
    wait_for(browser, lambda d: d.find_elements("css selector", "table.summary"), "the summary table")
    cells = [td.text for td in browser.find_elements("css selector", "table.summary td")]
    assert "val_mean_dice" in cells and "0.7000" in cells
    count = "return [...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
    assert browser.execute_script(count) == 1 + 5 + 5  # per-case plot, 5 worst, 5 best: all decoded
    assert "learning_rate" in browser.find_element("css selector", "pre.config").text


WBC = SHARED / "data" / "wbc_cellavision"


@pytest.mark.skipif(not WBC.is_dir(), reason=f"shared sample data absent ({WBC})")
def test_report_html_of_a_2d_bundle_on_real_rgb_images_draws_every_case(browser, tmp_path):
    from .test_lite_medsam_finetune import EVALUATE, run_bundle, wbc_whole_cell_set

    datalist = wbc_whole_cell_set(tmp_path / "data", ["001"], ["097", "098"])
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps({"dataset_dir": str(datalist.parent), "datalist": str(datalist), "labels": {"1": "cell"}})
    )
    out = tmp_path / "eval"
    run_bundle(EVALUATE, [data], output_dir=str(out), checkpoint="default", bundle_root=str(tmp_path), num_workers=0)
    report = out / "report.html"
    page = report.read_text()
    assert "Cases not drawn" not in page and "2 worst cases" in page and "2 best cases" in page
    browser.get(report.as_uri())
    wait_for(browser, lambda d: d.find_elements("css selector", "table.summary"), "the summary table")
    rows = [
        [td.text for td in tr.find_elements("css selector", "td")]
        for tr in browser.find_elements("css selector", "table.summary tr")
    ]
    present = float(next(r for r in rows if r and r[0] == "dice, present labels")[1])
    captions = {c.text for c in browser.find_elements("css selector", "figcaption")}  # "097: 0.982", the title's Dice
    scores = [float(c.split(": ")[1]) for c in captions]
    assert len(scores) == 2 and present == pytest.approx(np.mean(scores), abs=1e-3) and present > 0.9
    count = "return [...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
    assert browser.execute_script(count) == 1 + 2 + 2  # per-case plot, 2 worst, 2 best (the same two cases)
    widths = browser.execute_script("return [...document.images].map(i => i.getBoundingClientRect().right)")
    assert max(widths) <= browser.execute_script("return document.documentElement.clientWidth")  # fits the page
    pictures = re.findall(r'alt="(09[78])"', page)
    assert sorted(set(pictures)) == ["097", "098"]
    png = re.search(r'src="data:image/png;base64,([^"]+)" alt="097"', page).group(1)
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(png), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[0] > 200 and np.abs(picture[40:, :, 2].astype(int) - picture[40:, :, 0]).mean() > 10  # RGB

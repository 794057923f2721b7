"""The clinical path on real servers: a throwaway Orthanc (`scripts/orthanc.sh`, DICOMweb plugin) as
the datastore of `monaiseg label serve`; a DICOM CT series stored by STOW-RS, `/infer` on it, the
result saved back as DICOM SEG, read back from Orthanc and decoded; training from SEG labels; and
the faults: Orthanc down at start and mid-session, broken series, a non-image series, a SEG upload
cut off half-way, concurrent clients; and OHIF (MONAI Label's build) in headless Chromium: the study
list, segmentations from the MONAI Label panel, our SEG drawn.

The label server reaches Orthanc through a loopback TCP relay in this process, so a test can cut a
STOW-RS upload half-way through; everything else passes through unchanged."""

from __future__ import annotations

import ast
import contextlib
import gzip
import json
import re
import runpy
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import requests
import SimpleITK
from conftest import CHROMEDRIVER, CHROMIUM, NO_CHROMIUM, REPO, headless_chromium
from dicomweb_client.api import DICOMwebClient

from monaiseg.data.dicom_series import write_dicom_series
from monaiseg.data.synthetic_ct import make_synthetic_ct
from monaiseg.label.dicomweb import read_seg, segment_values, write_seg
from monaiseg.label.server import LabelServer, free_port, tiny_copy, tiny_overrides

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("Orthanc") is None or not Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so").is_file(),
        reason="Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)",
    ),
]
AFFINE = np.diag([0.8, 0.9, 2.5, 1.0])
LIST_EXPIRY = 2  # seconds the label server keeps the list of series (`label serve` sets 10)


class Orthanc:
    """`scripts/orthanc.sh` in its own process group on `port`, storage in `folder`."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port = folder, port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Orthanc:
        log = open(self.folder.parent / f"orthanc_{self.port}.log", "a")  # noqa: SIM115 (the server's lifetime)
        self.process = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "orthanc.sh"), str(self.folder), str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for _ in range(100):
            try:
                if requests.get(f"{self.url}/system", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.2)
        raise TimeoutError(f"Orthanc did not start: {(self.folder.parent / f'orthanc_{self.port}.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def seg_series(self) -> list[str]:
        found = DICOMwebClient(f"{self.url}/dicom-web").search_for_series(search_filters={"Modality": "SEG"})
        return [str(pydicom.Dataset.from_json(s).SeriesInstanceUID) for s in found]


class Relay:
    """A loopback TCP relay to `target_port`. While `cutting` is set, every STOW-RS request (a POST;
    dicomweb-client tries twice) is forwarded only half-way, then both sides are closed."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cutting = threading.Event()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()  # Orthanc down: the connection is refused as it would be without the relay
            return
        threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
        self._pipe(client, upstream, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and self.cutting.is_set() and b"POST " in data:
                    self.cuts += 1
                    sink.sendall(data[: len(data) // 2])
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


def store(orthanc: Orthanc, files: list[Path]) -> str:
    """STOW-RS the files; -> their SeriesInstanceUID."""
    DICOMwebClient(f"{orthanc.url}/dicom-web").store_instances([pydicom.dcmread(str(f)) for f in files])
    return str(pydicom.dcmread(str(files[0]), stop_before_pixels=True).SeriesInstanceUID)


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    """Orthanc (not yet started) behind a relay, and a label server on the relay's URL serving
    medsam2 (tiny, random weights) and lite_medsam (its released weights)."""
    root = tmp_path_factory.mktemp("dicomweb")
    bundles = root / "bundles"
    tiny_copy(REPO / "bundles" / "medsam2", bundles / "medsam2", {"image_size": 64})
    tiny_copy(REPO / "bundles" / "lite_medsam", bundles / "lite_medsam", weights=False)
    orthanc = Orthanc(root / "orthanc", free_port())
    relay = Relay(orthanc.port)
    server = LabelServer(
        f"http://127.0.0.1:{relay.port}/dicom-web",
        [bundles],
        overrides=tiny_overrides(bundles),
        log=root / "label_server.log",
        options=["--app-dir", str(root / "app")],
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MONAI_LABEL_DICOMWEB_CACHE_EXPIRY", str(LIST_EXPIRY))
        server.__enter__()
    server.orthanc, server.relay, server.root = orthanc, relay, root
    try:
        yield server
    finally:
        server.stop()
        orthanc.stop()
        relay.close()


@pytest.fixture(scope="module")
def ct_series(clinic):
    """Orthanc down at the server's start: a clear 503 naming it; then up, with the synthetic CT
    stored as a DICOM series. -> (series UID, volume (X, Y, Z), ground-truth labels (X, Y, Z))."""
    status, error, _ = clinic.infer("medsam2", "1.2.3.4", {"foreground": [[1, 1, 1]]})
    assert status == 503 and "DICOMweb server" in str(error) and "unreachable" in str(error)
    clinic.orthanc.start()
    make_dicom_ct = runpy.run_path(str(REPO / "scripts" / "make_dicom_ct.py"))["main"]
    size, spacing = ("64", "80", "6"), [str(AFFINE[n, n]) for n in range(3)]
    args = ["--out", str(clinic.root / "ct"), "--size", *size, "--spacing", *spacing, "--seed", "3"]
    uid = make_dicom_ct([*args, "--stow", f"{clinic.orthanc.url}/dicom-web"])
    volume, labels = make_synthetic_ct((64, 80, 6), seed=3)
    return uid, volume, labels


def decode_seg(orthanc: Orthanc, seg_uid: str) -> tuple[pydicom.Dataset, SimpleITK.Image]:
    client = DICOMwebClient(f"{orthanc.url}/dicom-web")
    meta = pydicom.Dataset.from_json(client.search_for_series(search_filters={"SeriesInstanceUID": seg_uid})[0])
    (seg,) = client.retrieve_series(str(meta.StudyInstanceUID), seg_uid)
    return seg, read_seg(seg)  # the original label values (the SEG numbers its segments 1..N)


def save_final(clinic, uid: str, label_bytes: bytes, params: dict) -> requests.Response:
    path = clinic.root / "label_to_save.nii.gz"
    path.write_bytes(label_bytes)
    with open(path, "rb") as f:
        return requests.put(
            f"{clinic.url}/datastore/label",
            params={"image": uid, "tag": "final"},
            data={"params": json.dumps(params)},
            files={"label": f},
            timeout=120,
        )


def test_infer_on_a_stored_series_and_the_seg_read_back_equals_the_label(clinic, ct_series):
    uid, volume, _ = ct_series
    clicks = {"foreground": [[32, 40, 3]]}
    roi = {"label": "liver", "roi": [16, 16, 48, 60, 2, 2]}
    several = {
        "objects": [{"label": "liver", "foreground": [[24, 28, 2]]}, {"label": "spleen", "roi": [36, 40, 56, 68, 3, 3]}]
    }
    results = {}
    for name, params in {"click": clicks, "roi": roi, "several": several}.items():
        status, result, label = clinic.infer("medsam2", uid, params)
        assert status == 200, result
        results[name] = (result, label)
    result, label = results["several"]
    assert set(result["labels"]) == {"liver", "spleen"}
    # the series' NIfTI conversion is not left behind; each result file goes with MONAI Label's background task,
    # which runs after the response is sent (so the client may look before it has run)
    deadline, left = time.time() + 10, None
    while time.time() < deadline and (left := list((clinic.root / "app" / "tmp").glob("*.nii*"))):
        time.sleep(0.1)
    assert not left, left
    inferred = nib.Nifti1Image.from_bytes(gzip.decompress(label))
    assert inferred.shape == volume.shape and np.allclose(inferred.affine, AFFINE)
    values = np.asarray(inferred.dataobj).astype(np.uint8)
    assert set(np.unique(values)) - {0} <= {result["labels"]["liver"], result["labels"]["spleen"]}

    before = set(clinic.orthanc.seg_series())
    response = save_final(clinic, uid, label, {"model": "medsam2"})
    assert response.status_code == 200, response.text
    (seg_uid,) = set(clinic.orthanc.seg_series()) - before
    seg, decoded = decode_seg(clinic.orthanc, seg_uid)
    assert seg.Modality == "SEG" and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == list(range(1, len(seg.SegmentSequence) + 1))
    values_of = segment_values(seg)
    names = {values_of[int(s.SegmentNumber)]: str(s.SegmentLabel) for s in seg.SegmentSequence}
    channel_def = json.loads((REPO / "bundles/medsam2/configs/metadata.json").read_text())["network_data_format"][
        "outputs"
    ]["pred"]["channel_def"]
    assert names == {v: channel_def[str(v)] for v in np.unique(values) if v}
    # voxel for voxel on the series' grid: SimpleITK arrays are (Z, Y, X)
    assert np.array_equal(SimpleITK.GetArrayFromImage(decoded).transpose(2, 1, 0), values)
    reader = SimpleITK.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(_series_folder(clinic, uid)))  # in position order
    series = reader.Execute()
    assert decoded.GetSize() == series.GetSize()
    assert np.allclose(decoded.GetOrigin(), series.GetOrigin()) and np.allclose(
        decoded.GetSpacing(), series.GetSpacing()
    )
    assert np.allclose(decoded.GetDirection(), series.GetDirection())


def _series_folder(clinic, uid: str) -> str:
    """The server's download of the series (MONAI Label names its files by SOPInstanceUID)."""
    return str(next((clinic.root / "app" / "dicomweb-cache").glob(f"*/{uid}")))


def test_lite_medsam_with_released_weights_segments_inside_the_box(clinic, ct_series):
    uid, volume, labels = ct_series
    liver = labels[..., 3] == 1
    xs, ys = np.nonzero(liver)
    box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()), 3, 3]
    status, result, label = clinic.infer("lite_medsam", uid, {"label": "object", "roi": box})
    assert status == 200, result
    mask = _decode(label)[..., 3] > 0
    inside = np.zeros_like(mask)
    inside[box[0] : box[2] + 1, box[1] : box[3] + 1] = True
    assert mask.any() and not (mask & ~inside).any()
    assert 2 * (mask & liver).sum() / (mask.sum() + liver.sum()) >= 0.8


def test_train_from_labels_stored_as_seg(clinic, ct_series):
    assert clinic.orthanc.seg_series(), "the SEG saved by the first test is the training label"
    weights = clinic.root / "bundles" / "medsam2" / "models" / "model.pt"
    before = weights.read_bytes()
    response = requests.post(
        f"{clinic.url}/train/medsam2", params={"run_sync": True}, json={"max_epochs": 1, "tiny": True}, timeout=900
    )
    assert response.status_code == 200, response.text[-2000:]
    assert response.json()["images"] == 1  # the series whose label is the SEG, read back from Orthanc
    assert weights.read_bytes() != before


def test_broken_and_non_image_series_are_refused_naming_their_uid(clinic, ct_series):
    uid, volume, _ = ct_series
    gap = write_dicom_series(volume[..., :5].astype(np.int16), AFFINE, clinic.root / "gap")
    gap_uid = store(clinic.orthanc, gap[:2] + gap[3:])  # slice 2 missing
    mixed = write_dicom_series(volume[..., :4].astype(np.int16), AFFINE, clinic.root / "mixed")
    tilted = pydicom.dcmread(str(mixed[1]))
    tilted.ImageOrientationPatient = [1, 0, 0, 0, 0.8, 0.6]
    tilted.save_as(str(mixed[1]))
    mixed_uid = store(clinic.orthanc, mixed)
    time.sleep(LIST_EXPIRY + 0.5)  # new series are listed once the server's list expires
    for series, reason in ((gap_uid, "missing"), (mixed_uid, "mixed orientations")):
        status, error, _ = clinic.infer("medsam2", series, {"foreground": [[32, 40, 1]]})
        assert status == 422 and series in str(error) and reason in str(error), error
    seg_uid = clinic.orthanc.seg_series()[0]
    status, error, _ = clinic.infer("medsam2", seg_uid, {"foreground": [[32, 40, 1]]})
    assert status == 422 and seg_uid in str(error) and "SEG" in str(error), error
    assert clinic.infer("medsam2", uid, {"foreground": [[32, 40, 3]]})[0] == 200  # still serving


def test_a_seg_upload_cut_half_way_leaves_no_seg_and_keeps_the_label(clinic, ct_series):
    uid, _, _ = ct_series
    status, result, label = clinic.infer("medsam2", uid, {"foreground": [[32, 40, 3]]})
    assert status == 200
    before = set(clinic.orthanc.seg_series())
    clinic.relay.cutting.set()
    response = save_final(clinic, uid, label, {"model": "medsam2"})
    clinic.relay.cutting.clear()
    assert clinic.relay.cuts >= 1
    assert response.status_code == 503 and "kept locally" in response.text, response.text
    assert set(clinic.orthanc.seg_series()) == before  # nothing half-stored
    kept = next((clinic.root / "app" / "dicomweb-cache").glob(f"*/labels/final/{uid}.nii.gz"))
    assert np.array_equal(np.asarray(nib.load(kept).dataobj), _decode(label))
    assert save_final(clinic, uid, label, {"model": "medsam2"}).status_code == 200  # saved again
    assert len(set(clinic.orthanc.seg_series()) - before) == 1


def test_orthanc_down_mid_session_is_a_clear_error_and_serving_resumes(clinic, ct_series):
    uid, volume, _ = ct_series
    other = store(clinic.orthanc, write_dicom_series(volume.astype(np.int16), AFFINE, clinic.root / "second"))
    time.sleep(LIST_EXPIRY + 0.5)
    clinic.orthanc.stop()
    status, error, _ = clinic.infer("medsam2", other, {"foreground": [[32, 40, 3]]})
    assert status == 503 and "unreachable" in str(error), error
    clinic.orthanc.start()
    assert clinic.infer("medsam2", other, {"foreground": [[32, 40, 3]]})[0] == 200


def test_concurrent_clients_get_the_sequential_results(clinic, ct_series):
    """4 clients at once, 2 requests each."""
    uid, _, _ = ct_series
    prompts = [{"foreground": [[20 + 8 * n, 28 + 6 * n, 2 + n]]} for n in range(2)]
    sequential = [_decode(clinic.infer("medsam2", uid, p)[2]) for p in prompts]

    def client(_: int) -> list[np.ndarray]:
        return [_decode(clinic.infer("medsam2", uid, p)[2]) for p in prompts]

    with ThreadPoolExecutor(4) as pool:
        for labels in pool.map(client, range(4)):
            assert all(np.array_equal(got, expected) for got, expected in zip(labels, sequential))


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(data)).dataobj)


# ---------------------------------------------------------------- OHIF (MONAI Label's build) in headless Chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium through selenium, keeping the page's console messages; WebGL in software
    (swiftshader), so OHIF's viewport renders without a GPU."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(NO_CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium_profile")
    driver = headless_chromium(profile, "1400,900", ("--enable-unsafe-swiftshader",), console_log=True)
    try:
        yield driver
    finally:
        driver.quit()


def page_shows(driver, texts: list[str], timeout: float = 120) -> str:
    """Wait until the page's text holds every one of `texts`; -> the text."""
    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        body = driver.find_element("tag name", "body").text
        if all(t in body for t in texts):
            return body
        time.sleep(1)
    pytest.fail(f"{texts} not shown within {timeout} s; the page says:\n{body[:3000]}")


# what the OHIF build of MONAI Label 0.8.5 fails to load here, none of it a script error: Google's fonts (no
# internet), the web-app manifest's icon (asked for at /assets/ outside /ohif/), and the panel's poll of a
# running training (MONAI Label answers 404 while none runs)
EXPECTED_LOAD_FAILURES = ("fonts.googleapis.com", "/assets/android-chrome", "/train/?check_if_running")


def text_input(driver):
    from selenium.webdriver.common.by import By

    return next(e for e in driver.find_elements(By.CSS_SELECTOR, "input") if e.get_attribute("type") == "text")


# the MONAI Label panel's clicks: its ProbeMONAILabel annotations, per frame of reference
PROBES = """const saved = window.cornerstoneTools.annotation.state.getAnnotationManager().saveAnnotations(null,
    'ProbeMONAILabel'); return Object.values(saved).flatMap(tools => tools.ProbeMONAILabel || []).length;"""


def click_voxel(driver, viewport_id: str, ijk: list[int]) -> None:
    """Show slice k of the series' volume in OHIF's viewport `viewport_id` and click voxel (i, j) there with a
    real mouse event. The position is computed from the page's canvas rectangle: a selenium offset from an
    element is taken from its visible part's centre, which moves when the page scrolls."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    x, y = driver.execute_script(
        """const [id, ijk] = arguments;
        const viewport = window.cornerstone.getRenderingEngines()[0].getViewport(id);
        const info = window.services.cornerstoneViewportService.getViewportInfo(id);
        const world = info.viewportData.data[0].volume.imageData.indexToWorld(ijk);
        const camera = viewport.getCamera(), shift = world[2] - camera.focalPoint[2];
        viewport.setCamera({focalPoint: [camera.focalPoint[0], camera.focalPoint[1], world[2]],
                            position: [camera.position[0], camera.position[1], camera.position[2] + shift]});
        viewport.render();
        const [cx, cy] = viewport.worldToCanvas(world), box = viewport.canvas.getBoundingClientRect();
        return [box.left + cx, box.top + cy];""",
        viewport_id,
        ijk,
    )
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(round(x), round(y)).click()
    actions.perform()
    # cornerstone holds a mouse-down back 0.4 s (DOUBLE_CLICK_TOLERANCE_MS: is it a double click?) before its tool
    # sees it: until then the panel has no point, and a Run then throws "annotations is not iterable" and sends
    # nothing (logged only at debug level, as a "Route /monai-label Error Boundary")
    deadline = time.time() + 10
    while time.time() < deadline and not driver.execute_script(PROBES):
        time.sleep(0.1)
    assert driver.execute_script(PROBES), "the click made no point in the MONAI Label panel"


def toast(driver, success: str, failure: str, timeout: float = 120) -> None:
    """Poll the page until OHIF's notification `success` shows (toasts last 4 s: polled every 0.25 s); fail
    at once on `failure`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = driver.find_element("tag name", "body").text
        assert failure not in body, body[:3000]
        if success in body:
            return
        time.sleep(0.25)
    pytest.fail(f"{success!r} not shown within {timeout} s; the page says:\n{body[:3000]}")


def labelmap(driver) -> tuple[np.ndarray, dict[int, str]]:
    """The MONAI Label panel's segmentation in OHIF (id '1') -> (segment index per voxel (X, Y, Z), names)."""
    found = driver.execute_script(
        """const service = window.services.segmentationService, volume = service.getLabelmapVolume('1');
        const data = volume.voxelManager.getCompleteScalarDataArray(), set = [];
        for (let n = 0; n < data.length; n++) if (data[n]) set.push([n, data[n]]);
        const segments = service.getSegmentation('1').segments;
        return {dims: volume.dimensions, set: set,
                names: Object.fromEntries(Object.entries(segments).map(([k, s]) => [k, s.label]))};"""
    )
    flat = np.zeros(int(np.prod(found["dims"])), np.uint8)
    for n, value in found["set"]:
        flat[n] = value
    x, y, z = found["dims"]
    return flat.reshape(z, y, x).transpose(2, 1, 0), {int(k): v for k, v in found["names"].items()}


def segment_from_panel(driver, clinic, model: str, organ: str, ijk: list[int]) -> dict:
    """In the MONAI Label panel's open Point Prompts: choose `model` and `organ`, click voxel `ijk` in the axial
    viewport, Run, wait for this model's "Successful"; -> the request as the server logged it (model, image and
    the panel's parameters)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(next(s for s in driver.find_elements(By.CSS_SELECTOR, "select") if s.is_displayed())).select_by_value(model)
    row = driver.find_element(By.XPATH, f"//tr[contains(@class, 'clickable-row')][td[normalize-space()='{organ}']]")
    driver.execute_script("arguments[0].click()", row)  # the clicks that follow are the organ's (under a toast)
    click_voxel(driver, "mpr-axial", ijk)
    driver.find_element(By.CSS_SELECTOR, "button[title='Run PointPrompts']").click()
    toast(driver, f"MONAI Label - {model}\nRunning Inference for Point Prompts - Successful", "Failed to Run Inference")
    return ast.literal_eval(re.findall(rf"Infer Request: (\{{'model': '{model}'.*)", clinic.log.read_text())[-1])


def test_ohif_lists_the_study_opens_it_and_shows_the_models(clinic, ct_series, browser, tmp_path):
    """The study list; the `monai-label` mode with its viewports; the panel connected, listing the models; then
    segmentations from the panel as an annotator makes them: Point Prompts, lite_medsam, the spleen in the
    organ list, one click on the spleen, Run -> "Successful", and OHIF draws the result over the spleen on that
    slice; then medsam2 (3D), drawn on the whole volume exactly as the server returns it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    uid = ct_series[0]
    found = DICOMwebClient(f"{clinic.orthanc.url}/dicom-web").search_for_series(
        search_filters={"SeriesInstanceUID": uid}
    )
    study = str(pydicom.Dataset.from_json(found[0]).StudyInstanceUID)
    browser.get(f"{clinic.url}/ohif/")
    # the study list, from Orthanc through MONAI Label's DICOMweb proxy: patient name and ID
    page_shows(browser, ["MONAISEG, SYNTHETIC", "MONAISEG-0001"])
    browser.save_screenshot(str(tmp_path / "ohif_study_list.png"))
    browser.get(f"{clinic.url}/ohif/monai-label?StudyInstanceUIDs={study}")
    page_shows(browser, ["synthetic CT", "W:", "L:"])  # the viewport's overlay: series, window and level
    assert browser.find_elements(By.CSS_SELECTOR, "canvas"), "no viewport canvas"
    server = text_input(browser)  # the MONAI Label panel's server field (default http://127.0.0.1:8000/)
    server.send_keys(Keys.CONTROL, "a")
    text_input(browser).send_keys(f"{clinic.url}/")  # React renders the field anew after each change
    text_input(browser).find_element(By.XPATH, "following::button[1]").click()  # connect
    page_shows(browser, ["monaiseg", "Point Prompts"])
    browser.find_element(By.XPATH, "//*[contains(text(), 'Point Prompts')]").click()
    options = lambda: [o.text for o in browser.find_elements(By.CSS_SELECTOR, "select option")]  # noqa: E731
    deadline = time.time() + 60
    while time.time() < deadline and not {"medsam2", "lite_medsam"} <= set(options()):
        time.sleep(1)
    assert {"medsam2", "lite_medsam"} <= set(options()), options()
    browser.save_screenshot(str(tmp_path / "ohif_viewer.png"))

    # segmentations from the panel: lite_medsam (2D) on the spleen's middle slice, then medsam2 (3D)
    for button in browser.find_elements(By.CSS_SELECTOR, "[data-cy='confirm-and-hide-button']"):
        browser.execute_script("arguments[0].click()", button)  # the "investigational use" banner
    spleen = ct_series[2][..., 3] == 3
    xs, ys = np.nonzero(spleen)
    target = [int(round(xs.mean())), int(round(ys.mean())), 3]
    request = segment_from_panel(browser, clinic, "lite_medsam", "spleen", target)
    browser.save_screenshot(str(tmp_path / "ohif_panel_segmentation.png"))
    # what the panel sent: the clicked voxel on its slice, and it asked for NRRD (the only format it reads)
    assert request["foreground"] == [target] and request["result_extension"] == ".nrrd", request
    drawn, names = labelmap(browser)
    assert set(np.unique(drawn)) - {0} == {next(k for k, v in names.items() if v == "spleen")}
    assert [k for k in range(drawn.shape[-1]) if drawn[..., k].any()] == [3]  # a 2D model: the clicked slice
    mask = drawn[..., 3] > 0
    assert 2 * (mask & spleen).sum() / (mask.sum() + spleen.sum()) >= 0.8
    # medsam2 (tiny, random weights): its 3D result is drawn voxel for voxel as the server returns it
    request = segment_from_panel(browser, clinic, "medsam2", "spleen", [target[0], target[1], 4])
    params = {k: v for k, v in request.items() if k not in ("model", "image")}
    status, _, nrrd = clinic.infer("medsam2", uid, params)
    assert status == 200 and nrrd.startswith(b"NRRD")
    (tmp_path / "medsam2.nrrd").write_bytes(nrrd)
    served = SimpleITK.GetArrayFromImage(SimpleITK.ReadImage(str(tmp_path / "medsam2.nrrd"))).transpose(2, 1, 0)
    drawn, _ = labelmap(browser)
    assert served.any() and np.array_equal(drawn > 0, served > 0)

    logs = browser.get_log("browser")
    assert not [e["message"] for e in logs if "Error Boundary" in e["message"]]  # a panel handler that threw
    messages = [e["message"] for e in logs if e["level"] == "SEVERE"]
    script_errors = [m for m in messages if "Failed to load resource" not in m]
    assert not script_errors, script_errors
    assert all(any(known in m for known in EXPECTED_LOAD_FAILURES) for m in messages), messages


def coloured_pixels(canvas) -> int:
    """Pixels of a viewport canvas that are not grey (the CT is; a drawn segment is not)."""
    import io

    from PIL import Image

    png = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")).astype(int)
    return int(((png.max(-1) - png.min(-1)) > 40).sum())


def test_ohif_draws_our_seg_on_the_slices_that_hold_it(clinic, ct_series, browser):
    """A spleen-only SEG (label value 3 -> segment 1) stored in Orthanc, opened in OHIF's viewer: its
    segment is listed by name and drawn on exactly the series' slices that hold the spleen (a SEG
    numbered by label value made OHIF fail: "Error loading displaySet")."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    labels = ct_series[2]
    series_dir = str(clinic.root / "ct")  # the files make_dicom_ct stored
    reader = SimpleITK.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(series_dir))
    grid = reader.Execute()
    spleen = SimpleITK.GetImageFromArray(np.where(labels == 3, 3, 0).astype(np.uint8).transpose(2, 1, 0))
    spleen.CopyInformation(grid)
    SimpleITK.WriteImage(spleen, str(clinic.root / "spleen_only.nii.gz"))
    seg = write_seg(clinic.root / "spleen_only.nii.gz", series_dir, {3: "spleen"}, "ohif-check")
    DICOMwebClient(f"{clinic.orthanc.url}/dicom-web").store_instances([seg])
    browser.get_log("browser")  # only this page's messages count below
    browser.get(f"{clinic.url}/ohif/viewer?StudyInstanceUIDs={seg.StudyInstanceUID}")
    page_shows(browser, ["ohif-check segmentation", "synthetic CT"])
    thumbnail = browser.find_element(By.XPATH, "//*[contains(text(), 'ohif-check segmentation')]")
    ActionChains(browser).double_click(thumbnail).perform()
    page_shows(browser, ["Do you want to open this Segmentation?"])
    next(b for b in browser.find_elements(By.CSS_SELECTOR, "button") if b.text == "Yes").click()
    for button in browser.find_elements(By.CSS_SELECTOR, "[data-cy='confirm-and-hide-button']"):
        browser.execute_script("arguments[0].click()", button)  # the "investigational use" banner
    panel = browser.find_element(By.CSS_SELECTOR, "[data-cy='panelSegmentation-btn']")
    browser.execute_script("arguments[0].click()", panel)  # clicked while the SEG still loads
    page_shows(browser, ["ohif-check segmentation", "spleen"])
    canvas = browser.find_elements(By.CSS_SELECTOR, "canvas")[0]
    depth = labels.shape[-1]
    counts: dict[int, int] = {}
    for key in [Keys.ARROW_DOWN] * depth + [Keys.ARROW_UP] * depth:  # each slice twice: a passing toast
        shown = re.search(r"I:\s*(\d+) \((\d+)/(\d+)\)", page_shows(browser, [f"/{depth})"])).group(2)
        time.sleep(0.5)  # the slice's overlay is drawn after its image
        counts[int(shown) - 1] = min(counts.get(int(shown) - 1, 1 << 30), coloured_pixels(canvas))
        ActionChains(browser).move_to_element(canvas).send_keys(key).perform()
        time.sleep(0.5)
    assert sorted(counts) == list(range(depth)), counts
    baseline = min(counts.values())  # the viewport's coloured text, on every slice
    drawn = {k for k, n in counts.items() if n - baseline > 200}
    assert drawn == {k for k in range(depth) if (labels[..., k] == 3).any()}, counts
    messages = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not [m for m in messages if "Failed to load resource" not in m], messages
    assert all(any(known in m for known in EXPECTED_LOAD_FAILURES) for m in messages), messages

"""Ids are names, never paths; no request reads outside the datastore (issue 26, items 1 and 2), against
the package's shared server (tests/label/conftest.py) with MONAI Label's own client and raw HTTP.

The `case_*` functions take a running `LabelServer` with `.data` (ct.nii.gz, rgb.png) and `.studies`
(scripts/check_label_server.py runs them too)."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

pytestmark = pytest.mark.slow


def tree(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of every file and folder under `root`, except under `skip` and server logs."""
    found = {}
    for p in root.rglob("*"):
        if p == skip or skip in p.parents or p.name.startswith("label_server_"):
            continue
        st = p.lstat()
        found[str(p.relative_to(root))] = (st.st_size if p.is_file() else 0, st.st_mtime_ns if p.is_file() else 0)
    return found


def client_status(call) -> tuple[int, str]:
    """(HTTP status, response text) of a MONAILabelClient call that the server refuses."""
    with pytest.raises(MONAILabelClientException) as err:
        call()
    found = re.match(r"Status: (\d+); Response: (.*)", err.value.msg, flags=re.S)
    assert found, err.value.msg
    return int(found.group(1)), found.group(2)


def raw(url: str, method: str, target: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, str]:
    """One request with `target` sent byte for byte (no client normalising `..` or encodings)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, dict]:
    boundary = "monaiseg-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\n\r\n{{}}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


TRAVERSALS = ["../escaped_upload", "sub/../../x", "..\\..\\x", "/tmp/abs_x", "..%2F..%2Fx", "a\x00b", "x" * 200]


def case_traversal_battery(server) -> None:
    """Every traversal attempt is a 400 naming its field, and nothing new appears outside the studies
    folder (the whole tree two levels up, listed before and after); a file named payload.demo_ext is
    stored as the .nii.gz its content is."""
    root = server.studies.parents[1]
    before = tree(root, server.studies)
    client = MONAILabelClient(server.url)
    ct = server.data / "ct.nii.gz"
    for image_id in TRAVERSALS:
        status, text = client_status(lambda i=image_id: client.upload_image(str(ct), i))
        assert status == 400 and "image" in text, (image_id, status, text)
    status, text = client_status(lambda: client.save_label("rgb", str(server.data / "rgb_label.png"), "../../../x"))
    assert status == 400 and "tag" in text, text
    status, text = client_status(lambda: client.save_label("../../x", str(server.data / "rgb_label.png")))
    assert status == 400 and "image" in text, text
    payload = server.studies.parent / "payload.demo_ext"
    payload.write_bytes(ct.read_bytes())
    body, headers = multipart("file", "payload.demo_ext", payload.read_bytes())
    for target in (
        "/datastore/?image=..%2F..%2Fx",
        "/datastore/?image=..%252F..%252Fx",
        "/datastore/image?image=%2e%2e%2f%2e%2e%2fx",
        "/datastore/?image=%2Fetc%2Fx",
    ):
        status, text = raw(server.url, "PUT", target, body, headers)
        assert status == 400 and "image" in text, (target, status, text)
    body, headers = multipart("file", "../../payload.demo_ext", payload.read_bytes())
    status, text = raw(server.url, "PUT", "/datastore/", body, headers)  # the id from the file name
    assert status == 200 and json.loads(text)["image"] == "payload", text
    body, headers = multipart("label", "x.nii.gz", ct.read_bytes())
    status, text = raw(server.url, "PUT", "/datastore/label?image=ct&tag=..%2F..%2F..%2Fx", body, headers)
    assert status == 400 and "tag" in text, text
    for method, target, field in (
        ("GET", "/datastore/image?image=..%2F..%2F..%2Fetc%2Fpasswd", "image"),
        ("HEAD", "/datastore/image?image=..%2Fct", "image"),
        ("GET", "/datastore/label?label=..%2Fct&tag=final", "label"),
        ("DELETE", "/datastore/?id=..%2Fstudies%2Fct", "id"),
        ("DELETE", "/datastore/label?id=ct&tag=..%2F..", "tag"),
        ("GET", "/session/..", "session_id"),
        ("DELETE", "/session/..", "session_id"),
        ("PUT", "/datastore/image/info?image=..%2Fx", "image"),
    ):
        status, text = raw(server.url, method, target)
        assert status == 400 and (method == "HEAD" or field in text), (method, target, status, text)
    save = {"save_label": True, "label_tag": "../../x"}
    status, text = client_status(lambda: client.infer("unet_cells", "rgb", save))
    assert status == 400 and "tag" in text, text
    after = tree(root, server.studies)
    new = sorted(set(after) - set(before) - {str(payload.relative_to(root))})
    changed = sorted(k for k in set(after) & set(before) if after[k] != before[k])
    assert not new and not changed, (new, changed)
    stored = sorted(p.name for p in server.studies.rglob("*payload*"))
    assert stored == ["payload.nii.gz"], stored
    assert not list(server.studies.rglob("*.demo_ext"))
    assert not (server.studies / "x").exists() and not (server.studies / "labels" / "x").exists()
    assert requests.delete(f"{server.url}/datastore/", params={"id": "payload"}, timeout=30).status_code == 200
    listed = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    assert "payload" not in listed and "ct" in listed


def case_no_reads_outside(server) -> None:
    """An image or label named by path (query or params) is refused, the same way whether that
    file exists or not; an unknown id is a 404."""
    client = MONAILabelClient(server.url)
    outside = server.studies.parent / "outside.png"
    outside.write_bytes((server.data / "rgb.png").read_bytes())
    missing = server.studies.parent / "missing.png"
    answers = []
    for path in (str(outside), str(missing), "/etc/passwd"):
        for image, params in (
            (path, {"foreground": [[3, 3]]}),
            ("rgb", {"image": path, "foreground": [[3, 3]]}),
            ("rgb", {"label": path, "object": 1, "foreground": [[3, 3]]}),
        ):
            status, text = client_status(lambda i=image, p=params: client.infer("sam_med2d", i, p))
            answers.append((status, json.loads(text)["detail"].replace(path, "PATH")))
    assert answers[:3] == answers[3:6] == answers[6:], answers
    assert [a[0] for a in answers[:3]] == [400, 400, 400] and "label" in answers[2][1], answers
    status, text = client_status(lambda: client.infer("sam_med2d", "nosuch", {"foreground": [[3, 3]]}))
    assert status == 404 and "not in the datastore" in text
    # an image sent with the request is read whatever its file name says (the content decides)
    upload = server.studies.parent / "picture.demo_ext"
    upload.write_bytes((server.data / "rgb.png").read_bytes())
    label, result = client.infer("sam_med2d", "", {"foreground": [[12, 20]], "roi": [5, 10, 25, 30]}, file=str(upload))
    assert Path(label).is_file() and result["labels"] == {"object": 1}


def test_traversal_attempts_are_refused_and_write_nothing_outside(shared_server):
    case_traversal_battery(shared_server)


def test_no_request_reads_a_path_it_names(shared_server):
    case_no_reads_outside(shared_server)

"""SessionStore: bounded by count (least recently used out), idle expiry, one client's sessions only,
the image and weights version a session was started on."""

from __future__ import annotations

import time

import pytest

from monaiseg.label.runtime import RequestError
from monaiseg.label.sessions import Session, SessionStore


def session(sid: str, client: str = "alice", image: str = "/ct.nii.gz", version: int = 1) -> Session:
    return Session(sid, client, "medsam2", image, version, state=object())


def status(call) -> tuple[int, str]:
    with pytest.raises(RequestError) as err:
        call()
    return err.value.status, str(err.value)


def test_get_returns_the_session_of_its_client_image_and_version():
    store = SessionStore(max_sessions=4, idle_seconds=60)
    kept = store.put(session("s1"))
    assert store.get("s1", "medsam2", "alice", "/ct.nii.gz", 1) is kept
    assert status(lambda: store.get("s1", "medsam2", "bob", "/ct.nii.gz", 1))[0] == 403
    assert status(lambda: store.get("s1", "medsam2", "alice", "/other.nii.gz", 1))[0] == 409
    code, message = status(lambda: store.get("s1", "medsam2", "alice", "/ct.nii.gz", 2))
    assert code == 410 and "weights changed" in message
    code, message = status(lambda: store.get("s1", "sam_med2d", "alice", "/ct.nii.gz", 1))
    assert code == 410 and "session expired: send the full prompts" in message


def test_least_recently_used_session_goes_first_beyond_the_bound():
    store = SessionStore(max_sessions=2, idle_seconds=60)
    store.put(session("s1"))
    store.put(session("s2"))
    store.get("s1", "medsam2", "alice", "/ct.nii.gz", 1)  # s2 is now the least recently used
    store.put(session("s3"))
    assert len(store) == 2
    assert status(lambda: store.get("s2", "medsam2", "alice", "/ct.nii.gz", 1))[0] == 410
    store.get("s1", "medsam2", "alice", "/ct.nii.gz", 1)


def test_idle_sessions_expire():
    store = SessionStore(max_sessions=2, idle_seconds=0.2)
    store.put(session("s1"))
    time.sleep(0.3)
    assert len(store) == 0
    assert status(lambda: store.get("s1", "medsam2", "alice", "/ct.nii.gz", 1))[0] == 410


def test_another_clients_id_is_not_taken_over():
    store = SessionStore()
    first = store.put(session("s1", client="alice"))
    assert status(lambda: store.put(session("s1", client="bob")))[0] == 403
    assert store.get("s1", "medsam2", "alice", "/ct.nii.gz", 1) is first
    restarted = store.put(session("s1", client="alice"))  # the owner may start it again
    assert store.get("s1", "medsam2", "alice", "/ct.nii.gz", 1) is restarted


@pytest.mark.parametrize("bound, idle", [(0, 10), (2, 0)])
def test_bounds_must_be_positive(bound, idle):
    with pytest.raises(ValueError, match="max_sessions"):
        SessionStore(bound, idle)

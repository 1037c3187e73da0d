"""The Action enum and appointment snapshots keep the stored strings the trail always had."""

from __future__ import annotations

import datetime as dt

import pytest

from server.actions import Action, AppointmentChange, AppointmentSnapshot, MalformedRecord
from server.models import AppointmentStatus, JobStatus, PartStat

STORED = {
    "technician": "bob",
    "starts_at": "2026-03-02T09:00:00+00:00",
    "ends_at": "2026-03-02T10:30:00+00:00",
    "status": "confirmed",
    "partstat": "NEEDS-ACTION",
    "job_status": "en_route",
    "sequence": 3,
}


def test_a_stored_snapshot_reads_back_typed_and_writes_the_same_record() -> None:
    snap = AppointmentSnapshot.from_record(STORED)
    assert snap.status is AppointmentStatus.CONFIRMED and snap.job_status is JobStatus.EN_ROUTE
    assert snap.partstat is PartStat.NEEDS_ACTION
    assert snap.starts_at == dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    assert snap.as_record() == STORED


def test_a_change_event_round_trips_and_keeps_the_action_string() -> None:
    payload = {"appointment_id": 7, "action": "appointment.hold.expire", "sequence": 4,
               "before": STORED, "after": {**STORED, "status": "cancelled", "sequence": 4}}
    change = AppointmentChange.from_payload(payload)
    assert change.action is Action.APPOINTMENT_HOLD_EXPIRE
    assert change.after.status is AppointmentStatus.CANCELLED
    assert change.as_payload() == payload


@pytest.mark.parametrize("payload", [
    {"appointment_id": 7, "action": "appointment.teleport", "sequence": 1, "before": None, "after": STORED},
    {"appointment_id": 7, "action": "appointment.book", "sequence": 1, "before": None, "after": None},
    {"appointment_id": "7", "action": "appointment.book", "sequence": 1, "before": None, "after": STORED},
    {"appointment_id": 7, "action": "appointment.book", "sequence": 1, "before": None,
     "after": {**STORED, "status": "maybe"}},
])
def test_a_malformed_change_event_is_refused(payload: dict[str, object]) -> None:
    with pytest.raises(MalformedRecord):
        AppointmentChange.from_payload(payload)

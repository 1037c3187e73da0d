"""Scheduling: appointments (book, move, reassign, cancel, a technician's answers),
availability (free slots) and self-booking (holds, confirmation)."""

from server.scheduling.appointments import (
    TECHNICIAN_STATUSES,
    accept,
    book,
    cancel,
    check_free,
    decline,
    find_by_uid,
    get_appointment,
    new_uid,
    reassign,
    reschedule,
    set_status,
    snapshot,
)

__all__ = [
    "TECHNICIAN_STATUSES",
    "accept",
    "book",
    "cancel",
    "check_free",
    "decline",
    "find_by_uid",
    "get_appointment",
    "new_uid",
    "reassign",
    "reschedule",
    "set_status",
    "snapshot",
]

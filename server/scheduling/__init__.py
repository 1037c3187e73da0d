"""Scheduling: appointments (book, move, reassign, cancel, a technician's answers),
availability (free slots), self-booking (holds, confirmation), service areas, the rules a
dispatcher may override, and travel between visits."""

from server.scheduling.appointments import (
    TECHNICIAN_STATUSES,
    accept,
    book,
    cancel,
    decline,
    find_by_uid,
    get_appointment,
    new_uid,
    reassign,
    reschedule,
    set_status,
    snapshot,
)
from server.scheduling.clashes import check_free
from server.scheduling.rules import (
    BookingRefused,
    OutsideServiceArea,
    OutsideWorkingHours,
    OverPersonalTime,
    Override,
)
from server.scheduling.travel import NotEnoughTravelTime, day_plan

__all__ = [
    "TECHNICIAN_STATUSES",
    "BookingRefused",
    "NotEnoughTravelTime",
    "OutsideServiceArea",
    "OutsideWorkingHours",
    "OverPersonalTime",
    "Override",
    "accept",
    "book",
    "cancel",
    "check_free",
    "day_plan",
    "decline",
    "find_by_uid",
    "get_appointment",
    "new_uid",
    "reassign",
    "reschedule",
    "set_status",
    "snapshot",
]

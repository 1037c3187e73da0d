"""Domain errors. Each carries what a client needs to show a person."""

from __future__ import annotations


class FieldcalError(Exception):
    """Base of every error the domain raises on purpose."""

    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(FieldcalError):
    """The configuration is missing or wrong; the server refuses to start."""


class NotFound(FieldcalError):
    status = 404


class Forbidden(FieldcalError):
    status = 403


class InvalidInput(FieldcalError):
    """The request is well-formed but its content cannot be accepted.

    `field` names the input at fault when one is (the domain function's parameter, e.g.
    "duration_minutes", or a weekday "mon"), so a form can show the message beside it.
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class Conflict(FieldcalError):
    status = 409


class SlotTaken(Conflict):
    """The technician already has a non-cancelled appointment at that time."""

    def __init__(self, technician: str, message: str | None = None,
                 blocking: tuple[int, ...] = ()) -> None:
        super().__init__(
            message or f"That time overlaps another appointment of {technician}: the slot is taken."
        )
        self.technician = technician
        self.blocking = blocking  # ids of the visits in the way, when known

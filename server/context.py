"""The context of one domain call: the open transaction, who acts, how mail is addressed."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.actors import Actor
from server.errors import Conflict, SlotTaken

P = ParamSpec("P")
R = TypeVar("R")

OVERLAP_MARKERS = ("appointment overlaps", "appointment_no_overlap")


@dataclass(frozen=True)
class Context:
    session: Session
    actor: Actor
    organizer: str


def is_overlap_violation(error: IntegrityError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    return sqlstate == "23P01" or any(m in str(error.orig) for m in OVERLAP_MARKERS)


def operation(func: Callable[Concatenate[Context, P], R]) -> Callable[Concatenate[Context, P], R]:
    """Run a domain function inside a savepoint of the caller's transaction.

    If it fails, none of its writes stay behind, and the caller's transaction
    remains usable. The database's overlap guard surfaces as SlotTaken.
    """

    @functools.wraps(func)
    def wrapper(ctx: Context, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with ctx.session.begin_nested():
                result = func(ctx, *args, **kwargs)
                ctx.session.flush()
                return result
        except IntegrityError as exc:
            if is_overlap_violation(exc):
                raise SlotTaken("the technician") from exc
            raise Conflict(f"The change conflicts with existing data: {exc.orig}") from exc

    return wrapper

"""Deterministic benchmark events: ~1 h appointments spread over ~1.5 years, a few recurring."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

FIRST_DAY = dt.date(2025, 1, 6)
SPAN_DAYS = 546  # ~1.5 years
RECURRING_EVERY = 250  # one event in 250 repeats weekly
RECURRING_COUNT = 26
STAMP = "20250101T000000Z"
TOPICS = ("Compressor service", "Oil change", "Filter swap", "Leak check", "Valve repair",
          "Dryer inspection", "Pressure test", "Belt replacement")
PLACES = ("Hall 2, Dock Road 14", "Workshop, Mill Lane 3", "Plant B, Canal Street 88",
          "Basement, Station Square 1")


@dataclass(frozen=True)
class Event:
    uid: str
    start: dt.datetime
    minutes: int
    summary: str
    location: str
    weekly_count: int = 0  # > 0: RRULE FREQ=WEEKLY;COUNT=weekly_count
    sequence: int = 0

    @property
    def href(self) -> str:
        return f"{self.uid}.ics"

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(minutes=self.minutes)

    def occurrences(self) -> list[tuple[dt.datetime, dt.datetime]]:
        count = self.weekly_count or 1
        length = dt.timedelta(minutes=self.minutes)
        return [(self.start + dt.timedelta(weeks=k), self.start + dt.timedelta(weeks=k) + length)
                for k in range(count)]

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return any(s < end and e > start for s, e in self.occurrences())

    def revised(self, sequence: int) -> Event:
        return Event(self.uid, self.start, self.minutes, f"{self.summary} (rev {sequence})",
                     self.location, self.weekly_count, sequence)

    def to_ics(self) -> str:
        lines = [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//fieldcal//bench//EN",
            "BEGIN:VEVENT",
            f"UID:{self.uid}",
            f"DTSTAMP:{STAMP}",
            f"DTSTART:{_utc(self.start)}",
            f"DTEND:{_utc(self.end)}",
            f"SUMMARY:{self.summary}",
            f"LOCATION:{self.location.replace(',', chr(92) + ',')}",
            "DESCRIPTION:Bring the service kit and the customer's maintenance log.",
            f"SEQUENCE:{self.sequence}",
        ]
        if self.weekly_count:
            lines.append(f"RRULE:FREQ=WEEKLY;COUNT={self.weekly_count}")
        lines += ["END:VEVENT", "END:VCALENDAR", ""]
        return "\r\n".join(lines)


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def generate(count: int, *, seed: int = 2025, prefix: str = "bench") -> list[Event]:
    """`count` events starting between 07:00 and 17:00 UTC on any day of the span."""
    rng = random.Random(seed)
    events = []
    for index in range(count):
        day = FIRST_DAY + dt.timedelta(days=rng.randrange(SPAN_DAYS))
        start = dt.datetime(day.year, day.month, day.day, rng.randrange(7, 17),
                            rng.choice((0, 15, 30, 45)), tzinfo=dt.UTC)
        events.append(Event(
            uid=f"{prefix}-{index:06d}",
            start=start,
            minutes=rng.choice((45, 60, 60, 60, 90)),
            summary=f"{rng.choice(TOPICS)} #{index}",
            location=rng.choice(PLACES),
            weekly_count=RECURRING_COUNT if index % RECURRING_EVERY == 0 else 0,
        ))
    return events


def new_event(index: int) -> Event:
    """An extra event created during the run (PUT), outside the query window."""
    start = dt.datetime(2027, 1, 4, 8, 0, tzinfo=dt.UTC) + dt.timedelta(hours=index)
    return Event(uid=f"bench-new-{index:06d}", start=start, minutes=60,
                 summary=f"Emergency call #{index}", location=PLACES[0])


def query_window() -> tuple[dt.datetime, dt.datetime]:
    """One week in the middle of the data (Monday to Monday)."""
    start = dt.datetime(2025, 10, 6, tzinfo=dt.UTC)
    return start, start + dt.timedelta(weeks=1)


def expected_in_window(events: list[Event]) -> int:
    start, end = query_window()
    return sum(1 for event in events if event.overlaps(start, end))

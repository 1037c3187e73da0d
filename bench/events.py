"""Deterministic benchmark events: ~1 h appointments spread over ~1.5 years, a few recurring."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

FIRST_DAY = dt.date(2025, 1, 6)
SPAN_DAYS = 546  # ~1.5 years
MARGIN = dt.timedelta(days=3)  # no random event this close to the queried week
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
    open_ended: bool = False  # RRULE FREQ=WEEKLY without an end
    sequence: int = 0

    @property
    def href(self) -> str:
        return f"{self.uid}.ics"

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(minutes=self.minutes)

    def occurrences(self, until: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        count = self.weekly_count or 1
        if self.open_ended:
            count = max(1, (until - self.start) // dt.timedelta(weeks=1) + 1)
        length = dt.timedelta(minutes=self.minutes)
        return [(self.start + dt.timedelta(weeks=k), self.start + dt.timedelta(weeks=k) + length)
                for k in range(count)]

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return any(s < end and e > start for s, e in self.occurrences(end))

    def revised(self, sequence: int) -> Event:
        return Event(self.uid, self.start, self.minutes, f"{self.summary} (rev {sequence})",
                     self.location, self.weekly_count, self.open_ended, sequence)

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
        if self.open_ended:
            lines.append("RRULE:FREQ=WEEKLY")
        elif self.weekly_count:
            lines.append(f"RRULE:FREQ=WEEKLY;COUNT={self.weekly_count}")
        lines += ["END:VEVENT", "END:VCALENDAR", ""]
        return "\r\n".join(lines)


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def query_window() -> tuple[dt.datetime, dt.datetime]:
    """The queried week (Monday to Monday): it holds the same events at every calendar size."""
    start = dt.datetime(2025, 10, 6, tzinfo=dt.UTC)
    return start, start + dt.timedelta(weeks=1)


def _recurring() -> list[Event]:
    """A few weekly series: three span the queried week, two end before it, one never ends."""
    first = dt.datetime(2025, 1, 7, 7, 30, tzinfo=dt.UTC)
    counts = (52, 52, 52, 10, 10, 0)
    return [Event(uid=f"bench-weekly-{i}", start=first + dt.timedelta(days=i % 5, hours=i),
                  minutes=30, summary=f"Weekly briefing {i}", location=PLACES[i % len(PLACES)],
                  weekly_count=count, open_ended=count == 0)
            for i, count in enumerate(counts)]


def _probe_week() -> list[Event]:
    """Four jobs a day, Monday to Friday, in the queried week."""
    monday = query_window()[0]
    return [Event(uid=f"bench-week-{day}{slot}",
                  start=monday + dt.timedelta(days=day, hours=hour),
                  minutes=60, summary=f"{TOPICS[(day + slot) % len(TOPICS)]} (week)",
                  location=PLACES[slot])
            for day in range(5) for slot, hour in enumerate((8, 10, 13, 15))]


def generate(count: int, *, seed: int = 2025) -> list[Event]:
    """`count` events: fixed recurring series, a fixed queried week, the rest at random.

    The random ones start between 07:00 and 17:00 UTC on any day of the span but
    not within MARGIN of the queried week, so a 1-week query meets the same events
    (and the same near misses) at every size.
    """
    rng = random.Random(seed)
    fixed = _recurring() + _probe_week()
    week_start, week_end = query_window()
    events = list(fixed)
    index = 0
    while len(events) < count:
        day = FIRST_DAY + dt.timedelta(days=rng.randrange(SPAN_DAYS))
        start = dt.datetime(day.year, day.month, day.day, rng.randrange(7, 17),
                            rng.choice((0, 15, 30, 45)), tzinfo=dt.UTC)
        index += 1
        if week_start - MARGIN <= start < week_end + MARGIN:
            continue
        events.append(Event(
            uid=f"bench-{index:06d}",
            start=start,
            minutes=rng.choice((45, 60, 60, 60, 90)),
            summary=f"{rng.choice(TOPICS)} #{index}",
            location=rng.choice(PLACES),
        ))
    return events[:count]


DENSE = 400
DENSE_MONDAY = dt.datetime(2026, 9, 7, tzinfo=dt.UTC)  # after the random span, one weekly series


def dense_week() -> list[Event]:
    """DENSE events in the week of DENSE_MONDAY: 80 a day, Monday to Friday, 07:00-17:00."""
    return [Event(uid=f"bench-dense-{n:04d}",
                  start=DENSE_MONDAY + dt.timedelta(days=n % 5, hours=7, minutes=(n // 5) * 7 % 600),
                  minutes=(30, 45, 60, 90)[n % 4], summary=f"{TOPICS[n % len(TOPICS)]} (dense {n})",
                  location=PLACES[n % len(PLACES)])
            for n in range(DENSE)]


def dense_window() -> tuple[dt.datetime, dt.datetime]:
    return DENSE_MONDAY, DENSE_MONDAY + dt.timedelta(weeks=1)


def with_dense_week(count: int) -> list[Event]:
    """`count` events of which DENSE fill one week (a query with a large answer)."""
    return generate(count - DENSE) + dense_week()


def new_event(index: int) -> Event:
    """An extra event created during the run (PUT), outside the query window."""
    start = dt.datetime(2027, 1, 4, 8, 0, tzinfo=dt.UTC) + dt.timedelta(hours=index)
    return Event(uid=f"bench-new-{index:06d}", start=start, minutes=60,
                 summary=f"Emergency call #{index}", location=PLACES[0])


def expected_in_window(events: list[Event],
                       window: tuple[dt.datetime, dt.datetime] | None = None) -> int:
    start, end = window or query_window()
    return sum(1 for event in events if event.overlaps(start, end))

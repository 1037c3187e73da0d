"""Slack: booking, reschedule, cancellation and "on my way" posts to a team's channel
(`chat.postMessage` with blocks linking to the console), and verification of what Slack
sends us (signing secret, `v0:` HMAC-SHA256, 5 minutes' tolerance).

Settings: `channel` (required), `base_url` (default https://slack.com/api).
Secrets: `bot_token` (xoxb-…), `signing_secret`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from zoneinfo import ZoneInfo

from plugins.platforms.http import HttpConnector
from server.platforms import Inbound, InvalidSignature, Op, Rejected, Remote, Reply, Visit

TOLERANCE_S = 300
HEADLINES = {
    "appointment.book": "New visit booked",
    "appointment.confirm": "Visit confirmed",
    "appointment.reschedule": "Visit moved",
    "appointment.reassign": "Visit reassigned",
    "appointment.cancel": "Visit cancelled",
    "appointment.status": "Job status changed",
    "appointment.decline": "Technician declined a visit",
    "appointment.cant_make_it": "Technician can't make it: the visit is back in the tray",
}
PROGRESS_ACTIONS = frozenset({"appointment.status", "appointment.on_my_way", "appointment.on_site",
                              "appointment.done"})
JOB_STATUS_WORDS = {"en_route": "is on the way", "on_site": "is on site", "completed": "finished the job"}


class Slack(HttpConnector):
    name = "slack"
    default_base_url = "https://slack.com/api"
    required_settings = frozenset({"channel"})
    secret_names = frozenset({"bot_token", "signing_secret"})
    keeps_objects = False
    alerts = True

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('bot_token')}"}

    def headline(self, op: Op, visit: Visit) -> str:
        if op == Op.CANCEL or visit.status == "cancelled":
            return "Visit cancelled"
        if visit.action in PROGRESS_ACTIONS:
            words = JOB_STATUS_WORDS.get(visit.job_status)
            if words:
                return f"{visit.technician_name.split(' ')[0] or 'The technician'} {words}"
        return HEADLINES.get(visit.action, "Visit updated")

    def message(self, op: Op, visit: Visit) -> dict[str, str]:
        zone = ZoneInfo(visit.timezone)
        start = visit.starts_at.astimezone(zone)
        end = visit.ends_at.astimezone(zone)
        when = f"{start:%a %d %b %Y, %H:%M}–{end:%H:%M} ({visit.timezone})"
        headline = self.headline(op, visit)
        who = visit.technician_name or "unassigned"
        text = f"{headline}: {visit.title}, {when}, {who}"
        blocks = [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{_escape(headline)}*\n"
                    f"{_escape(visit.title)}\n{_escape(when)}\n"
                    f"Technician: {_escape(who)}\n{_escape(visit.location)}",
                },
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the console"},
                        "url": visit.url,
                    }
                ],
            },
        ]
        return {
            "channel": self.config.setting("channel"),
            "text": text,
            "blocks": json.dumps(blocks, ensure_ascii=False),
            "unfurl_links": "false",
        }

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        return Remote(self.post(self.message(op, visit)))

    def alert(self, text: str, url: str) -> None:
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f":warning: *{_escape(text)}*"}},
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "url": url, "text": {"type": "plain_text", "text": "Open the console"}}
                ],
            },
        ]
        self.post(
            {
                "channel": self.config.setting("channel"),
                "text": f"Needs attention: {text}",
                "blocks": json.dumps(blocks, ensure_ascii=False),
                "unfurl_links": "false",
            }
        )

    def post(self, message: dict[str, str]) -> str:
        """chat.postMessage, form-encoded as the contract declares (blocks as a JSON string)."""
        response = self.request("POST", "/chat.postMessage", data=message)
        body = response.json()
        if not body.get("ok"):
            raise Rejected(f"slack: chat.postMessage refused: {body.get('error', 'unknown error')}")
        return str(body.get("ts", ""))

    def check(self) -> str:
        self.request("POST", "/auth.test")
        return f"slack: token accepted for channel {self.config.setting('channel')}"

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        secret = self.config.secrets.get("signing_secret", "")
        stamp = request.header("X-Slack-Request-Timestamp")
        given = request.header("X-Slack-Signature")
        if not secret or not stamp.isdigit() or not given:
            raise InvalidSignature("slack: the request is not signed")
        if abs(now.timestamp() - int(stamp)) > TOLERANCE_S:
            raise InvalidSignature("slack: the request's timestamp is too old")
        base = b"v0:" + stamp.encode("ascii") + b":" + request.body
        expected = "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            raise InvalidSignature("slack: the signature does not match")

    def receive(self, request: Inbound) -> Reply:
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            return Reply(400, "the body is not JSON")
        if isinstance(payload, dict) and payload.get("type") == "url_verification":
            return Reply(200, json.dumps({"challenge": payload.get("challenge", "")}), "application/json")
        return Reply(200, "")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

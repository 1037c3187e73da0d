"""`fieldcal apikey new|list|revoke` and `fieldcal api openapi`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from server import apikeys
from server.cli.common import Runtime, iso, json_option, parse_duration, pass_runtime, print_json
from server.cli.links import DAYS
from server.models import ApiKey, utcnow


def _expiry(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    days = DAYS.match(value.strip().lower())
    return utcnow() + (dt.timedelta(days=int(days[1])) if days else parse_duration(value))


def key_json(row: ApiKey) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "role": row.role, "prefix": row.prefix,
            "created_by": row.created_by, "created_at": iso(row.created_at),
            "expires_at": iso(row.expires_at), "revoked_at": iso(row.revoked_at),
            "last_used_at": iso(row.last_used_at)}


@click.group()
def apikey() -> None:
    """Keys for the dispatch API (/api/v1)."""


@apikey.command("new")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice([r.value for r in apikeys.ApiRole]),
              help="dispatcher: everything; readonly: reads; integration: reads + customers, "
                   "jobs and appointments.")
@click.option("--expires", default=None, help="Lifetime, e.g. 90d or 12h (default: none).")
@json_option
@pass_runtime
def apikey_new(runtime: Runtime, name: str, role: str, expires: str | None, as_json: bool) -> None:
    """Create a key. It is printed once; only its hash is stored."""
    with runtime.write() as ctx:
        row, key = apikeys.issue_key(ctx, name, apikeys.ApiRole(role), _expiry(expires))
        key_id = row.id
    if as_json:
        print_json({"id": key_id, "key": key})
    else:
        click.echo(f"API key #{key_id} ({role}) for {name}; shown only now:\n{key}")


@apikey.command("list")
@json_option
@pass_runtime
def apikey_list(runtime: Runtime, as_json: bool) -> None:
    """Every key: role, when it was last used, whether it was revoked."""
    with runtime.read() as session:
        rows = [key_json(row) for row in apikeys.list_keys(session)]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        click.echo(f"#{row['id']:<4} {row['name']:<20} {row['role']:<12} {row['prefix']}…  "
                   f"last used {row['last_used_at'] or 'never'}  expires "
                   f"{row['expires_at'] or 'never'}  {state}")
    if not rows:
        click.echo("(none)", err=True)


@apikey.command("revoke")
@click.argument("key_id", type=int)
@json_option
@pass_runtime
def apikey_revoke(runtime: Runtime, key_id: int, as_json: bool) -> None:
    """Stop a key at once."""
    with runtime.write() as ctx:
        data = key_json(apikeys.revoke_key(ctx, key_id))
    if as_json:
        print_json(data)
    else:
        click.echo(f"Revoked API key #{key_id} ({data['name']}).")


@click.group()
def api() -> None:
    """The dispatch API's contract."""


@api.command("openapi")
@pass_runtime
def api_openapi(runtime: Runtime) -> None:
    """Print the OpenAPI 3.1 document (commit it as server/api/openapi.json)."""
    from server.api import render_document  # the face, loaded only for this command
    from server.app import create_app

    settings = runtime.settings.with_overrides(secret_keys=runtime.settings.secret_keys or ("-",))
    app = create_app(settings=settings)
    with app.test_request_context("/"):
        click.echo(render_document(), nl=False)

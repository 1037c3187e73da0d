"""OAuth 2.0 for integrations: the authorization-code flow with PKCE, and token refresh.

`fieldcal integration connect ID` prints the platform's authorize URL; the platform sends
the browser back to /integrations/oauth/callback with a code and our signed `state`, and
`complete` trades the code for tokens. `fresh_token` refreshes shortly before expiry under
the integration's row lock (PostgreSQL `FOR UPDATE`; SQLite writers are serial), so two
workers never refresh twice; a response without a refresh token keeps the stored one;
`invalid_grant` turns the integration "needs reconnect" (its pushes wait, nothing is dropped).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select

from server import audit
from server.actions import Action
from server.actors import Actor
from server.context import Context, operation
from server.db import Database
from server.errors import InvalidInput
from server.models import Integration, utcnow
from server.platforms import AuthExpired, Grant, OAuth, Transient, connector_class
from server.vault import Vault

if TYPE_CHECKING:
    import httpx  # imported where a token is requested: most processes never do

STATE_SALT = "fieldcal.oauth-state"
STATE_MAX_AGE_S = 900
REFRESH_MARGIN = dt.timedelta(minutes=5)
CALLBACK_PATH = "/integrations/oauth/callback"
CALLBACK_ACTOR = Actor(name="oauth-callback", channel="web", role="system")


class NeedsReconnect(AuthExpired):
    """The platform refused the refresh token (invalid_grant): a person must reconnect."""


def endpoints(integration: Integration) -> OAuth:
    oauth = connector_class(integration.platform).oauth
    if oauth is None:
        raise InvalidInput(f"{integration.platform} does not connect with OAuth; "
                           "give its token with --secret")
    settings = integration.settings or {}
    return OAuth(str(settings.get("auth_url") or oauth.authorize_url),
                 str(settings.get("token_url") or oauth.token_url), oauth.scopes, oauth.pkce,
                 oauth.extra_authorize, oauth.grant)


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@operation
def connect(ctx: Context, vault: Vault, integration: Integration, signing_keys: tuple[str, ...],
            base_url: str) -> str:
    """Start the authorization-code flow: keep a new PKCE verifier and state (encrypted with
    the integration's secrets) and return the URL to send a person to."""
    url, integration.secrets = authorize_url(integration, vault, signing_keys, base_url)
    audit.record(ctx.session, ctx.actor, Action.INTEGRATION_CONNECT, "integration", integration.id)
    return url


def authorize_url(integration: Integration, vault: Vault, signing_keys: tuple[str, ...],
                  base_url: str) -> tuple[str, str]:
    """The URL to send a person to, and the integration's new sealed secrets (with the PKCE
    verifier) to store before they go."""
    oauth = endpoints(integration)
    if oauth.grant == Grant.CLIENT_CREDENTIALS:
        raise InvalidInput(f"{integration.platform} needs no sign-in: its client id and secret fetch "
                           "tokens by themselves (--secret client_id=... --secret client_secret=...)")
    stored = vault.open(integration.secrets)
    client_id = stored.get("client_id", "")
    if not client_id:
        raise InvalidInput("set the OAuth client first: --secret client_id=... --secret client_secret=...")
    verifier = secrets.token_urlsafe(64)
    state = URLSafeTimedSerializer(list(signing_keys), salt=STATE_SALT).dumps(
        {"integration": integration.id, "nonce": secrets.token_urlsafe(16)})
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": base_url + CALLBACK_PATH,
              "scope": " ".join(oauth.scopes), "state": state, **dict(oauth.extra_authorize)}
    if oauth.pkce:
        params |= {"code_challenge": _challenge(verifier), "code_challenge_method": "S256"}
    sealed = vault.seal({**stored, "pkce_verifier": verifier, "oauth_state": state})
    return f"{oauth.authorize_url}?{urlencode(params)}", sealed


def integration_of_state(state: str, signing_keys: tuple[str, ...]) -> int:
    try:
        serializer = URLSafeTimedSerializer(list(signing_keys), salt=STATE_SALT)
        data = serializer.loads(state, max_age=STATE_MAX_AGE_S)
    except BadSignature as exc:
        raise InvalidInput("this sign-in link is invalid or expired; run `fieldcal integration connect` "
                           "again") from exc
    return int(data["integration"])


def _token_request(url: str, form: dict[str, str], http: httpx.Client) -> dict[str, object]:
    import httpx  # here, not at import: web workers that never refresh a token skip it

    try:
        response = http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise Transient(f"token endpoint unreachable: {type(exc).__name__}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 500:
        raise Transient(f"token endpoint answered {response.status_code}")
    if response.status_code >= 400 or "access_token" not in body:
        error = str(body.get("error", response.status_code))
        if error in ("invalid_grant", "unauthorized_client", "invalid_client"):
            raise NeedsReconnect(f"the platform refused our grant ({error}); reconnect the integration")
        raise AuthExpired(f"token request refused: {error}")
    return dict(body)


def _store_tokens(stored: dict[str, str], body: dict[str, object], now: dt.datetime) -> dict[str, str]:
    updated = dict(stored)
    updated["access_token"] = str(body["access_token"])
    if body.get("refresh_token"):
        updated["refresh_token"] = str(body["refresh_token"])  # else keep the one we had
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int | float | str) and str(expires_in).isdigit():
        updated["expires_at"] = (now + dt.timedelta(seconds=int(expires_in))).isoformat()
    else:
        updated.pop("expires_at", None)
    return updated


def complete(database: Database, vault: Vault, integration_id: int, state: str, code: str, base_url: str,
             http: httpx.Client, clock: Callable[[], dt.datetime] = utcnow) -> Integration:
    """Trade the authorization code for tokens (the callback's work)."""
    with database.write() as session:
        integration = session.get(Integration, integration_id, with_for_update=True)
        if integration is None:
            raise InvalidInput("that integration no longer exists")
        stored = vault.open(integration.secrets)
        if not secrets.compare_digest(stored.get("oauth_state", ""), state):
            raise InvalidInput("this sign-in link was replaced by a newer one; use the newest")
        oauth = endpoints(integration)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": base_url + CALLBACK_PATH,
                "client_id": stored.get("client_id", ""), "client_secret": stored.get("client_secret", "")}
        if oauth.pkce:
            form["code_verifier"] = stored.get("pkce_verifier", "")
        body = _token_request(oauth.token_url, form, http)
        updated = _store_tokens(stored, body, clock())
        updated.pop("pkce_verifier", None)
        updated.pop("oauth_state", None)
        integration.secrets = vault.seal(updated)
        integration.status = "active"
        integration.last_error = ""
        audit.record(session, CALLBACK_ACTOR, Action.INTEGRATION_CONNECTED, "integration", integration.id,
                     after={"scopes": str(body.get("scope", ""))})
        session.flush()
        session.expunge(integration)
        return integration


def fresh_token(database: Database, vault: Vault, integration_id: int, http: httpx.Client, *,
                refused: str | None = None, clock: Callable[[], dt.datetime] = utcnow) -> bool:
    """Refresh the access token if it expires within the margin, or if it is still `refused`
    (the token a platform just answered 401 to; another worker may have refreshed it since).
    Returns whether this call refreshed. Runs under the integration's row lock."""
    with database.write() as session:
        integration = session.scalars(select(Integration).where(Integration.id == integration_id)
                                      .with_for_update()).first()
        if integration is None or connector_class(integration.platform).oauth is None:
            return False
        stored = vault.open(integration.secrets)
        oauth = endpoints(integration)
        by_client = oauth.grant == Grant.CLIENT_CREDENTIALS
        if not (stored.get("refresh_token") or by_client):
            return False
        expires_at = stored.get("expires_at")
        now = clock()
        due = expires_at is not None and dt.datetime.fromisoformat(expires_at) - REFRESH_MARGIN <= now
        due = due or (by_client and not stored.get("access_token"))
        if not (due or (refused is not None and stored.get("access_token") == refused)):
            return False
        form = {"grant_type": "refresh_token", "refresh_token": stored.get("refresh_token", ""),
                "client_id": stored.get("client_id", ""), "client_secret": stored.get("client_secret", "")}
        if by_client:  # no refresh token in this grant: the client asks for a new access token
            form = {"grant_type": str(Grant.CLIENT_CREDENTIALS), "client_id": stored.get("client_id", ""),
                    "client_secret": stored.get("client_secret", "")}
        body = _token_request(oauth.token_url, form, http)
        integration.secrets = vault.seal(_store_tokens(stored, body, now))
        return True

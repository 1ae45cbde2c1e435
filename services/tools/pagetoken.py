"""Page tokens for get_user_learned_items: HMAC-signed, bound to the learner and the query, expiring.

The token carries the last item id of the page, the filters it was made for, an expiry and a hash of the
learner id (not the id itself). A token from another learner, for other filters, expired or altered is
refused with INVALID_ARGUMENT; the learner itself always comes from the verified JWT.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from services.tools.errors import invalid

_RESTART = "ask again without page_token to start from the first page"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PageCursor:
    last_item_id: str


class PageTokens:
    def __init__(self, secret: bytes, ttl_seconds: int = 3600) -> None:
        self.secret = secret
        self.ttl = ttl_seconds

    def _user(self, user_id: str) -> str:
        return hashlib.sha256(b"learner|" + user_id.encode()).hexdigest()[:16]

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.secret, payload, hashlib.sha256).digest()[:18]

    def issue(self, user_id: str, scope: str, last_item_id: str, now: float | None = None) -> str:
        """A signed page token for this learner and scope, valid for a while."""
        payload = json.dumps({"u": self._user(user_id), "s": scope, "k": last_item_id,
                              "e": int((now or time.time()) + self.ttl)}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def open(self, token: str, user_id: str, scope: str, now: float | None = None) -> PageCursor:
        """The last item id of a page token; INVALID_ARGUMENT when it is forged, expired or someone else's."""
        try:
            body, mac = token.split(".", 1)
            payload = _unb64(body)
            ok = hmac.compare_digest(self._mac(payload), _unb64(mac))
            data = json.loads(payload) if ok else None
        except (ValueError, binascii.Error, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("k"), str):
            raise invalid(f"page_token is not valid (damaged or altered); {_RESTART}")
        if data.get("u") != self._user(user_id):
            raise invalid(f"page_token was issued to a different learner; {_RESTART}")
        if data.get("e", 0) < (now or time.time()):
            raise invalid(f"page_token has expired; {_RESTART}")
        if data.get("s") != scope:
            raise invalid(f"page_token was issued for a different entity_type or level; {_RESTART}")
        return PageCursor(last_item_id=data["k"])

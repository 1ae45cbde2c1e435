"""Learner identity: JWT minting (local) and verification (HS256 or RS256 via JWKS).

A service derives the user id from the verified token only, never from a
request field or a model's function-call arguments.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import grpc
import jwt

from services.common.config import AuthConfig

ADMIN = "admin"
SERVICE = "service"


class AuthError(Exception):
    """Token missing, malformed, expired, or signed with the wrong key."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    roles: frozenset[str]
    token: str
    expires_at: float

    @property
    def is_admin(self) -> bool:
        """The caller may use the admin RPCs and pages."""
        return ADMIN in self.roles

    @property
    def is_service(self) -> bool:
        """The caller is another Kotoba service (it may write on a learner's behalf)."""
        return SERVICE in self.roles


def mint_token(auth: AuthConfig, user_id: str, roles: tuple[str, ...] = (), ttl_seconds: int | None = None) -> str:
    """Local tokens only: HS256 with the configured secret."""
    if auth.algorithm != "HS256":
        raise AuthError("tokens can only be minted locally (HS256); production tokens come from the identity provider")
    if not user_id or len(user_id) > 128:
        raise AuthError("user id must be 1..128 characters")
    now = int(time.time())
    claims = {
        "sub": user_id,
        "iss": auth.issuer,
        "aud": auth.audience,
        "iat": now,
        "exp": now + (ttl_seconds if ttl_seconds is not None else auth.token_ttl_seconds),
        "jti": uuid.uuid4().hex,
        "roles": sorted(set(roles)),
    }
    return jwt.encode(claims, auth.secret, algorithm="HS256")


class TokenVerifier:
    def __init__(self, auth: AuthConfig) -> None:
        self.auth = auth
        self._jwks = jwt.PyJWKClient(auth.jwks_url, cache_keys=True, lifespan=3600, timeout=5) if auth.jwks_url else None

    def verify(self, token: str) -> Identity:
        """The identity a token proves; AuthError when it is missing, forged, expired or for another audience."""
        if not token:
            raise AuthError("missing bearer token")
        try:
            if self.auth.algorithm == "HS256":
                key = self.auth.secret
            else:
                assert self._jwks is not None
                key = self._jwks.get_signing_key_from_jwt(token).key
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.auth.algorithm],
                audience=self.auth.audience,
                issuer=self.auth.issuer,
                options={"require": ["sub", "exp", "iat", "aud", "iss"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience is wrong") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer is wrong") from None
        except jwt.InvalidSignatureError:
            raise AuthError("token signature is invalid") from None
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise AuthError(f"token is invalid: {exc}") from None
        lifetime = self.auth.max_token_lifetime_seconds
        if lifetime and float(claims["exp"]) - time.time() > lifetime + 5:
            raise AuthError(f"token lifetime is too long (at most {lifetime // 3600} h here); sign in again")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 128:
            raise AuthError("token subject is invalid")
        roles = claims.get("roles") or []
        # Cognito puts groups in "cognito:groups"; accept either.
        roles = list(roles) + list(claims.get("cognito:groups") or [])
        return Identity(user_id=sub, roles=frozenset(str(r) for r in roles), token=token,
                        expires_at=float(claims["exp"]))


def bearer_from_header(value: str | None) -> str:
    """The token of an "Authorization: Bearer …" header value; empty for any other scheme."""
    if not value:
        return ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bearer_from_metadata(context: grpc.aio.ServicerContext) -> str:
    """The bearer token a gRPC caller sent in its metadata; empty when there is none."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return bearer_from_header(value)
    return ""


async def authenticate(context: grpc.aio.ServicerContext, verifier: TokenVerifier,
                       role: str | None = None) -> Identity:
    """The caller's identity from gRPC metadata, or abort with UNAUTHENTICATED / PERMISSION_DENIED."""
    try:
        identity = verifier.verify(bearer_from_metadata(context))
    except AuthError as exc:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"not signed in: {exc}")
    if role and role not in identity.roles:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"this needs the {role} role")
    return identity


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC call metadata carrying the token, for service-to-service calls."""
    return (("authorization", f"Bearer {token}"),)


class BearerInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds a bearer token to every unary call on a channel that has none (benches and tests that make many
    calls; services pass the learner's token per call instead)."""

    def __init__(self, token: str) -> None:
        self.pair = auth_metadata(token)[0]

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        """Attach the service token to a call that carries no authorization of its own."""
        metadata = list(client_call_details.metadata or ())
        if not any(key == "authorization" for key, _ in metadata):
            metadata.append(self.pair)
        details = grpc.aio.ClientCallDetails(client_call_details.method, client_call_details.timeout, metadata,
                                             client_call_details.credentials, client_call_details.wait_for_ready)
        return await continuation(details, request)

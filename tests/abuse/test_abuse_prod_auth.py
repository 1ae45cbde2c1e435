"""Issue 15, finding 5: the dev JWT secret was accepted in prod if someone set it, and prod accepted tokens
of any lifetime. Prod now refuses known development secrets at start-up and tokens valid for over 24 h."""

from __future__ import annotations

import time

import jwt
import pytest

from services.common.auth import AuthError, TokenVerifier, mint_token
from services.common.config import LOCAL_DEV_JWT_SECRET, CommonConfig, ConfigError

PROD = {"KOTOBA_ENV": "prod", "KOTOBA_JWT_ALGORITHM": "HS256", "AWS_REGION": "eu-central-1"}
STRONG = "f3c9a1e0b7d24c55a8e61f0d9b3c7a2e-prod"


@pytest.mark.parametrize("secret", [LOCAL_DEV_JWT_SECRET, f"  {LOCAL_DEV_JWT_SECRET.upper()}  "])
def test_prod_refuses_the_dev_secret(secret):
    with pytest.raises(ConfigError) as err:
        CommonConfig.from_env({**PROD, "KOTOBA_JWT_SECRET": secret})
    assert err.value.variable == "KOTOBA_JWT_SECRET"


def test_prod_refuses_a_configured_token_ttl_over_a_day():
    with pytest.raises(ConfigError) as err:
        CommonConfig.from_env({**PROD, "KOTOBA_JWT_SECRET": STRONG, "KOTOBA_TOKEN_TTL_SECONDS": str(30 * 86400)})
    assert err.value.variable == "KOTOBA_TOKEN_TTL_SECONDS"


def _token(secret: str, auth, lifetime_s: int) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "learner-1", "iss": auth.issuer, "aud": auth.audience, "iat": now,
                       "exp": now + lifetime_s}, secret, algorithm="HS256")


def test_prod_refuses_long_lived_tokens_local_does_not():
    prod = CommonConfig.from_env({**PROD, "KOTOBA_JWT_SECRET": STRONG}).auth
    verifier = TokenVerifier(prod)
    assert verifier.verify(_token(STRONG, prod, 3600)).user_id == "learner-1"
    assert verifier.verify(mint_token(prod, "learner-1")).user_id == "learner-1"  # the default ttl fits
    for lifetime in (25 * 3600, 10 * 365 * 86400):
        with pytest.raises(AuthError, match="lifetime"):
            verifier.verify(_token(STRONG, prod, lifetime))
    # A token without exp never verified anywhere (exp is a required claim).
    no_exp = jwt.encode({"sub": "x", "iss": prod.issuer, "aud": prod.audience, "iat": int(time.time())}, STRONG)
    with pytest.raises(AuthError):
        verifier.verify(no_exp)
    local = CommonConfig.from_env({}).auth
    assert TokenVerifier(local).verify(_token(local.secret, local, 30 * 86400)).user_id == "learner-1"

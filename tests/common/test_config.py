import pytest

from services.common.config import CommonConfig, ConfigError


def test_defaults_are_local():
    config = CommonConfig.from_env({})
    assert config.environment == "local"
    assert config.addr("retrieval") == "127.0.0.1:50051"
    assert config.addr("tools") == "127.0.0.1:50052"
    assert config.addr("conversations") == "127.0.0.1:50053"
    assert config.addr("gateway") == "127.0.0.1:8080"
    assert config.addr("live") == "127.0.0.1:8765"
    assert config.aws.dynamodb_endpoint == "http://127.0.0.1:8000"
    assert config.table("items") == "kotoba-items"
    assert config.auth.algorithm == "HS256"


@pytest.mark.parametrize(
    "env, variable, words",
    [
        ({"KOTOBA_TOOLS_ADDR": "nohost"}, "KOTOBA_TOOLS_ADDR", "host:port"),
        ({"KOTOBA_TOOLS_ADDR": "h:99999"}, "KOTOBA_TOOLS_ADDR", "host:port"),
        ({"KOTOBA_ENV": "staging"}, "KOTOBA_ENV", "one of"),
        ({"KOTOBA_ENV": "prod"}, "KOTOBA_JWKS_URL", "required"),
        ({"KOTOBA_ENV": "prod", "KOTOBA_JWKS_URL": "http://evil.example/jwks"}, "KOTOBA_JWKS_URL", "https"),
        ({"KOTOBA_ENV": "prod", "KOTOBA_JWT_ALGORITHM": "HS256", "KOTOBA_JWT_SECRET": "short"},
         "KOTOBA_JWT_SECRET", "32"),
        ({"KOTOBA_DRAIN_SECONDS": "soon"}, "KOTOBA_DRAIN_SECONDS", "number"),
        ({"KOTOBA_TOKEN_TTL_SECONDS": "5"}, "KOTOBA_TOKEN_TTL_SECONDS", ">= 60"),
        ({"KOTOBA_LOG_LEVEL": "LOUD"}, "KOTOBA_LOG_LEVEL", "one of"),
    ],
)
def test_config_errors_name_the_variable(env, variable, words):
    with pytest.raises(ConfigError) as err:
        CommonConfig.from_env(env)
    assert err.value.variable == variable
    assert variable in str(err.value) and words in str(err.value)


def test_prod_with_jwks_and_aws_endpoints():
    config = CommonConfig.from_env({
        "KOTOBA_ENV": "prod", "KOTOBA_JWKS_URL": "https://cognito.example/.well-known/jwks.json",
        "KOTOBA_TABLE_PREFIX": "prod-", "AWS_REGION": "eu-west-1",
    })
    assert config.auth.algorithm == "RS256"
    assert config.aws.dynamodb_endpoint == ""  # real AWS
    assert config.table("progress") == "prod-progress"

"""`kotoba token` and `kotoba db …`."""

from __future__ import annotations

import argparse
import json
import sys

from services.common.auth import ADMIN, AuthError, mint_token
from services.common.aws import dynamodb_client
from services.common.config import CommonConfig, ConfigError
from services.common.tables import create_tables


def _token(args: argparse.Namespace) -> int:
    try:
        config = CommonConfig.from_env()
        roles = tuple(args.role or ()) + ((ADMIN,) if args.admin else ())
        token = mint_token(config.auth, args.user, roles, ttl_seconds=args.ttl)
    except (ConfigError, AuthError) as exc:
        print(f"kotoba token: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"token": token, "user": args.user, "roles": sorted(roles)}))
    else:
        print(token)
    return 0


def _create_tables(args: argparse.Namespace) -> int:
    config = CommonConfig.from_env()
    result = create_tables(dynamodb_client(config.aws), config.aws.table_prefix)
    if args.json:
        print(json.dumps(result))
    else:
        for name, state in result.items():
            print(f"{config.table(name):32} {state}")
    return 0


def register(cli) -> None:
    """Add the shared commands (minting a local learner token, creating the tables) to the command line."""
    p = cli.command("token", "Mint a local learner token (HS256 dev secret); prints the token alone.", _token)
    p.add_argument("--user", required=True, help="learner id (the token's subject)")
    p.add_argument("--admin", action="store_true", help="add the admin role")
    p.add_argument("--role", action="append", help="add another role (e.g. service)")
    p.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
    p.add_argument("--json", action="store_true")
    p = cli.subcommand("db", "create-tables", "Create the DynamoDB tables (idempotent).", _create_tables)
    p.add_argument("--json", action="store_true")

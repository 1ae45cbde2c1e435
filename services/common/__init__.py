"""Shared plumbing: config, logging, telemetry, auth, AWS clients, tables, gRPC bootstrap."""

"""Shared test helpers: the end-to-end stack (kotoba_stack) and fault tools (faultkit)."""

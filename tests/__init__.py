"""Kotoba's test suite (a package: `from tests.support.kotoba_stack import …` works without sys.path edits)."""

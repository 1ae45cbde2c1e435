"""Evaluations run against the live product (`kotoba eval …`)."""

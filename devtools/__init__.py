"""Developer tooling (process launcher, helper processes); not part of the production image."""

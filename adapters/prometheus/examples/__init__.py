"""Example source plugins, as a user would write them (see the README)."""

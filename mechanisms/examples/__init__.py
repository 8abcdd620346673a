"""Example plugins of the researcher-facing form, for the README and as templates."""

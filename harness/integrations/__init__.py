"""Integrations with other tools (lm-eval). Each imports its tool lazily."""

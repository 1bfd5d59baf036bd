"""Scenarios: schema, seed data, triggers, objectives, scoring and the report."""

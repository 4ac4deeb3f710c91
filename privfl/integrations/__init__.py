"""Optional integrations of privfl with other frameworks (each behind its own extra)."""

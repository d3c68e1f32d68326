"""Custom operators (BiWKV)."""

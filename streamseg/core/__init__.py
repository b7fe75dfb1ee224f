"""The domain, with no I/O: events, per-customer features and state, standardisation,
segment names and profiles, pseudonymisation."""

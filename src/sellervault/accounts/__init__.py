"""People and services: accounts, passwords, TOTP, sessions, API keys, grants."""

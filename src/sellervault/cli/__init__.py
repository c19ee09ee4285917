"""The `sellervault` command line: bootstrap commands, and an HTTPS client for the rest."""

"""Shared counters and flags: sliding-window counts and flags with a time to live, for the
controls that count (failed logins today; lockout, rate detectors and kill switches next),
in the process or in Redis for every process of a vault (``interface.py`` says what they do).
"""

"""Deletion and return of buyer data: requests on a 72-hour clock, execution by cryptographic
erase, certificates of sanitization, retention rules (CONTROLS.md rows D1, R1, G3)."""

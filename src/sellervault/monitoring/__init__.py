"""Monitoring: detectors that read the security log as it is written, and the alerts they
raise."""

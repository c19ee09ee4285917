"""Periodic jobs: what runs (``registry``), each due run claimed and run once across every
process on the database (``runner``), and the ticks ``serve`` fires them with (``scheduler``).
"""

"""Marketplace records: the classified field registry, SP-API mapping, ingest, read and reveal."""

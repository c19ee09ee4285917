"""The security log: typed events, hash-chained under a dedicated log key, verifiable."""

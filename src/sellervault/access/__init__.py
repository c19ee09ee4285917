"""Authorization: roles, tenant-scoped grants, purposes, Cedar policies; deny by default."""

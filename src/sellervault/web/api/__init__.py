"""JSON API routers; each route declares its permission action."""

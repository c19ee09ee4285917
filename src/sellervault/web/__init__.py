"""The HTTPS service: FastAPI routers, middleware, TLS server."""

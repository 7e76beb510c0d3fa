"""HTTP edge: FastAPI app, routers under /api/v1, error translation, metrics."""

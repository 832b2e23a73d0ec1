"""The HTTP service: a thin FastAPI app over the library, its job queues, workers and notifiers."""

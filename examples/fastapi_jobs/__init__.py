"""FastAPI with an in-process background job; the status answer's caching is one setting."""

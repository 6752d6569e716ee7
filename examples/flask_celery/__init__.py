"""Flask + Celery the way Flask's Celery pattern shows; the status caching is one setting."""

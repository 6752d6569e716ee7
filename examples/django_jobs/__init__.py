"""A one-file Django app with a background job in a thread; the status caching is one setting."""

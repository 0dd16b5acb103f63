"""Operating sagas (private).

Retry, compensate and abort as store transitions, the actions on a runtime, the HTTP
operator API.
"""

"""HTTP capability (private).

The Starlette app, typed routes, problem+json errors, request limits and the per-request
observability middleware.
"""

"""OpenAPI 3.1 from the typed routes, and the docs page that shows it (private).

``_declare`` holds what routes say about themselves (imported by the routing
modules, so it imports none of them); ``_document`` builds the document;
``_serve`` answers ``/openapi.json``, ``/asyncapi.json`` and ``/docs``.
"""

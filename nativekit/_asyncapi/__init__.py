"""AsyncAPI 3.0 of a service's messaging (private): consumers, declared publishers,
command handlers and saga command steps, with their topics, keys, headers and payloads."""

"""The participant side of command/reply sagas (private): command handlers and the reply store."""

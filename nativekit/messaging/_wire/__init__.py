"""What crosses the broker (private).

The envelope and its headers, the broker protocol, the memory broker, the publisher.
"""

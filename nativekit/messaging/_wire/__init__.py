"""What crosses the broker (private).

the envelope and its headers, the broker protocol, the memory broker, the publisher.
"""

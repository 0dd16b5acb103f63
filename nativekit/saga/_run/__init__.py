"""Implementation of nativekit; import the public names from the package above."""

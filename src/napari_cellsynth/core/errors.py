"""The error every bundle reader raises, in a module of its own so that the zoo and the bundle reader share it
without importing each other."""


class BundleError(ValueError):
    """A bundle is missing, corrupt, or does not fit the data it is given."""

"""The package version (recorded in every manifest and feature store)."""

__version__ = "0.1.0"

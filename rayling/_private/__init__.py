"""Private implementation of rayling. Nothing here is public API."""

"""rayling's version (one place: the package, init()'s context and the dashboard read it)."""

VERSION = "0.1.0"

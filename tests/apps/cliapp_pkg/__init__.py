"""A package, to import an app from a dotted module path."""

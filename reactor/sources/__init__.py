"""Trigger sources: import the one you need by module."""

"""Fixtures for `doctor`'s tests; the helpers live in doctor_fixtures.py (a unique module name,
so it never collides with another folder's conftest)."""

from doctor_fixtures import pki, start_apiserver

__all__ = ["pki", "start_apiserver"]

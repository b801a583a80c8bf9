"""Fixtures for `doctor`'s tests (defined in doctor_fixtures.py)."""

from tests.integration.doctor.doctor_fixtures import pki, start_apiserver

__all__ = ["pki", "start_apiserver"]

"""Fixtures for `doctor`'s tests (defined in doctor_fixtures.py)."""

from tests.integration.doctor.doctor_fixtures import kubeconfig_for, pki, start_apiserver

__all__ = ["kubeconfig_for", "pki", "start_apiserver"]

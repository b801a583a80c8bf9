"""Asking the real apiserver what a ServiceAccount may do (SubjectAccessReview, as the admin).

kube-apiserver's RBAC authorizer reads Roles and bindings through an informer, so a grant
just created (or deleted) takes effect a moment later: `wait_until` polls, bounded, for a
test that must not race it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.e2e.controlplane.cluster import ControlPlane


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    namespace: str
    name: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @property
    def groups(self) -> list[str]:
        return [
            "system:serviceaccounts",
            f"system:serviceaccounts:{self.namespace}",
            "system:authenticated",
        ]

    def may(
        self,
        plane: ControlPlane,
        verb: str,
        resource: str,
        namespace: str = "",
        group: str = "",
        subresource: str = "",
    ) -> bool:
        attributes = {"verb": verb, "group": group, "resource": resource, "namespace": namespace}
        if subresource:
            attributes["subresource"] = subresource
        review = plane.create_object(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": self.user,
                    "groups": self.groups,
                    "resourceAttributes": attributes,
                },
            },
        )
        return bool(review["status"].get("allowed"))

    def wait_until(
        self,
        plane: ControlPlane,
        allowed: bool,
        verb: str,
        resource: str,
        namespace: str = "",
        group: str = "",
        subresource: str = "",
        timeout: float = 10,
    ) -> None:
        """Return once `may(...)` answers `allowed`; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.may(plane, verb, resource, namespace, group, subresource) != allowed:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.user} {verb} {group}/{resource}/{subresource} in {namespace!r}: "
                    f"still {not allowed} after {timeout}s"
                )
            time.sleep(0.05)

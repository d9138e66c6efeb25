"""Pure rules for who may see what, and how parameters merge (reference 3.4).

Read access as OpenWhisk grants it: everything in the caller's own namespace; in another
namespace only a published package (and, for a binding, the package it binds, too) and its actions.

Merge order: package < binding < action < trigger < payload; `final` forbids overriding
parameters the action (or its package) already defines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from triggerhub.errors import FORBIDDEN, RESERVED_PARAMS, BadRequest, Forbidden
from triggerhub.model import Action, FullyQualifiedName, Identity, Package, annotation, params_to_dict


def check_write(identity: Identity, fqn: FullyQualifiedName) -> None:
    if fqn.namespace != identity.namespace:
        raise Forbidden(FORBIDDEN)


def check_read(identity: Identity, fqn: FullyQualifiedName, package: Package | None) -> None:
    """Own namespace always; another namespace only inside a published package."""
    if fqn.namespace == identity.namespace:
        return
    if package is not None and package.publish:
        return
    raise Forbidden(FORBIDDEN)


def package_readable(identity: Identity, package: Package | None, bound: Package | None) -> bool:
    """May `identity` read `package` (None: absent) and, when it is a binding, `bound`, the
    package it binds (None: absent)? Absent and private look the same: no existence oracle."""
    if package is None:
        return False
    if package.namespace != identity.namespace and not package.publish:
        return False
    if package.binding is None or package.binding.namespace == identity.namespace:
        return True
    return bound is not None and bound.publish


def not_authorized(names: Iterable[FullyQualifiedName]) -> Forbidden:
    """OpenWhisk's 403 for entities a request names but the caller may not read: each as
    `namespace[/package]/name`, sorted."""
    listed = ", ".join(sorted({f"{fqn.path}/{fqn.name}" for fqn in names}))
    return Forbidden(f"The supplied authentication is not authorized to access '{listed}'.")


def merge_arguments(layers: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return merged


def check_final(action: Action, inherited: dict[str, Any], payload: dict[str, Any]) -> None:
    """With annotation `final`, parameters defined on the action or its package are immutable."""
    if not annotation(action.annotations, "final", False):
        return
    defined = set(inherited) | set(params_to_dict(action.parameters))
    if defined & set(payload):
        raise BadRequest(RESERVED_PARAMS)


def bound_parameters(package: Package | None, binding: Package | None) -> dict[str, Any]:
    """Package params, overridden by the binding's params (binding is the user's package)."""
    merged: dict[str, Any] = {}
    if package is not None:
        merged.update(params_to_dict(package.parameters))
    if binding is not None:
        merged.update(params_to_dict(binding.parameters))
    return merged

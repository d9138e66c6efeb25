"""Routes for a rule's dead letters (issue 14): list them, and redrive them through the rule as it
is now or to another action. Both are authorised like reading the rule; redrive also needs the
action it runs to be readable by the caller."""

from __future__ import annotations

from aiohttp import web

from triggerhub.api.context import engine_of, flag, identity_of, json_body, list_window, name_of, namespace_of

RULE = "/api/v1/namespaces/{namespace}/rules/{name}"


async def list_dead_letters(request: web.Request) -> web.Response:
    """Oldest first: id, rule, eventId, activationId (the last attempt), reason, attempts, time."""
    engine, identity = engine_of(request), identity_of(request)
    fqn = name_of(request, namespace_of(request, identity))
    if flag(request, "count"):
        return web.json_response({"deadletters": await engine.deliveries.count_dead_letters(identity, fqn)})
    skip, limit = list_window(request, "deadletters")
    letters = await engine.deliveries.dead_letters(identity, fqn, skip=skip, limit=limit)
    return web.json_response([letter.to_json() for letter in letters])


async def redrive_dead_letters(request: web.Request) -> web.Response:
    """202 {"activationIds": [...], "skipped": [...]}: one new activation per letter (optional
    `ids`, `action`); `skipped` lists the letters another redrive is running already."""
    engine, identity = engine_of(request), identity_of(request)
    fqn = name_of(request, namespace_of(request, identity))
    return web.json_response(await engine.redrive(identity, fqn, await json_body(request)), status=202)


routes = [
    web.get(f"{RULE}/deadletters", list_dead_letters, allow_head=False),
    web.post(f"{RULE}/deadletters/redrive", redrive_dead_letters),
]

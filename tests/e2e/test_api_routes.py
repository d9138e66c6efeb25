"""API gateway routes: OpenWhisk's route management calls (web/whisk.system/apimgmt/*) and the
routes served at /api/<namespace><base path><relative path>."""

from __future__ import annotations

import json
from typing import Any

from tests.plugins.hub import put_action
from triggerhub.engine.auth import create_subject

WEB = [{"key": "web-export", "value": True}, {"key": "raw-http", "value": False}, {"key": "final", "value": True}]
BOOK = "def main(args):\n    return {'id': args.get('id'), 'shelf': args.get('shelf'), 'path': args['__ow_path']}\n"
PAGE = ("def main(args):\n    return {'statusCode': 201, 'headers': {'Content-Type': 'text/plain'},"
        " 'body': 'page %s of %s by %s' % (args['page'], args['id'], args.get('author'))}\n")
MGMT = "web/whisk.system/apimgmt"
FORBIDDEN = "The supplied authentication is not authorized to access this resource."


def apidoc(base: str, rel: str, verb: str, action: str, **extra: Any) -> dict[str, Any]:
    """The body the `openwhisk` npm client sends for ow.routes.create."""
    return {"apidoc": {"namespace": "_", "gatewayBasePath": base, "gatewayPath": rel, "gatewayMethod": verb,
                       "id": f"API:_:{base}", "action": {"name": action, "namespace": "_", "backendMethod": "GET",
                                                        "backendUrl": "ignored", "authkey": "never-stored"},
                       **extra}}


async def gateway(hub, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
    async with hub.session.request(method, f"{hub.apihost}/api/guest{path}", **kwargs) as response:
        return response.status, response.headers, await response.read()


async def create(hub, *args: str, auth: str | None = None, responsetype: str = "json", **extra: Any) -> tuple[int, Any]:
    return await hub.call("POST", f"{MGMT}/createApi", apidoc(*args, **extra), auth=auth, responsetype=responsetype)


async def test_created_routes_answer_http_with_the_actions_result_then_delete(hub):
    await put_action(hub, "book", BOOK, "python:default", annotations=WEB)
    await put_action(hub, "page", PAGE, "python:default", annotations=WEB)
    status, created = await create(hub, "/shop", "/books/{id}", "GET", "book", apiName="shop-api")
    assert status == 200
    assert (created["namespace"], created["gwApiActivated"], created["gwApiUrl"]) == (
        "guest", True, f"{hub.apihost}/api/guest")
    assert "never-stored" not in json.dumps(created)
    assert (await create(hub, "/shop", "/books/{id}/pages/{page}", "POST", "page", responsetype="http"))[0] == 200

    status, headers, body = await gateway(hub, "GET", "/shop/books/42?shelf=top")
    assert (status, json.loads(body)) == (200, {"id": "42", "shelf": "top", "path": "/books/42"})
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "GET, OPTIONS"
    status, headers, body = await gateway(hub, "POST", "/shop/books/42/pages/7", json={"author": "Ada"})
    assert (status, headers["Content-Type"], body) == (201, "text/plain", b"page 7 of 42 by Ada")
    status, _, body = await gateway(hub, "DELETE", "/shop/books/42")
    assert (status, json.loads(body)["error"]) == (405, "DELETE is not allowed on /shop/books/42; this route "
                                                        "answers GET")
    status, headers, _ = await gateway(hub, "OPTIONS", "/shop/books/42",
                                       headers={"Access-Control-Request-Headers": "X-Custom"})
    assert (status, headers["Access-Control-Allow-Methods"], headers["Access-Control-Allow-Headers"]) == (
        200, "GET, OPTIONS", "X-Custom")
    assert (await gateway(hub, "GET", "/shop/nothing/here"))[0] == 404

    status, listed = await hub.call("GET", f"{MGMT}/getApi")
    assert status == 200 and [a["id"] for a in listed["apis"]] == ["API:guest:/shop"]
    status, _ = await hub.call("DELETE", f"{MGMT}/deleteApi", basepath="/shop", relpath="/books/{id}",
                               operation="GET", force=True)
    assert status == 200
    assert (await gateway(hub, "GET", "/shop/books/42"))[0] == 404
    assert (await gateway(hub, "POST", "/shop/books/1/pages/2", json={}))[0] == 201
    status, _ = await hub.call("DELETE", f"{MGMT}/deleteApi", basepath="shop-api", force=True)
    assert status == 200
    assert (await hub.call("GET", f"{MGMT}/getApi"))[1] == {"apis": []}
    status, body = await hub.call("DELETE", f"{MGMT}/deleteApi", basepath="/shop", force=True)
    assert (status, body["error"]) == (404, "API '/shop' has no route matching relpath (any) and operation (any)")


async def test_get_api_returns_the_openapi_document_of_a_base_path(hub):
    await put_action(hub, "book", BOOK, "python:default", annotations=WEB)
    await create(hub, "/shop", "/books/{id}", "GET", "book", apiName="shop-api")
    await create(hub, "/shop", "/books", "PUT", "book", cors=False, responsetype="http")

    status, listed = await hub.call("GET", f"{MGMT}/getApi", basepath="/shop")

    assert status == 200 and len(listed["apis"]) == 1
    value = listed["apis"][0]["value"]
    web_url = f"{hub.apihost}/api/v1/web/guest/default/book"
    assert value["apidoc"] == {
        "swagger": "2.0", "info": {"title": "shop-api", "version": "1.0.0"}, "basePath": "/shop",
        "x-gateway-url": f"{hub.apihost}/api/guest/shop",
        "paths": {
            "/books": {"put": {
                "operationId": "put/books", "responses": {"default": {"description": "Default response"}},
                "x-openwhisk": {"namespace": "guest", "package": "default", "action": "book", "url": f"{web_url}.http"},
                "x-triggerhub": {"responsetype": "http", "cors": False, "project": ""}}},
            "/books/{id}": {"get": {
                "operationId": "get/books/{id}", "responses": {"default": {"description": "Default response"}},
                "x-openwhisk": {"namespace": "guest", "package": "default", "action": "book", "url": f"{web_url}.json"},
                "x-triggerhub": {"responsetype": "json", "cors": True, "project": ""},
                "parameters": [{"name": "id", "in": "path", "required": True, "type": "string",
                                "description": "path parameter 'id', passed to the action as 'id'"}]}}}}
    status, headers, _ = await gateway(hub, "OPTIONS", "/shop/books")
    assert (status, "Access-Control-Allow-Origin" in headers) == (405, False)


async def test_route_calls_are_authorised_like_entities(hub):
    alice = await create_subject(hub.hub.engine.store, "alice")
    await put_action(hub, "book", BOOK, "python:default", annotations=WEB)
    await put_action(hub, "plain", BOOK, "python:default")
    await create(hub, "/shop", "/books/{id}", "GET", "book")

    status, body = await hub.call("POST", f"{MGMT}/createApi", apidoc("/x", "/y", "GET", "book"), auth="nobody:x")
    assert status == 401
    status, body = await create(hub, "/mine", "/b", "GET", "/guest/book", auth=alice.auth_key)
    assert (status, body["error"]) == (403, FORBIDDEN)
    status, body = await hub.call("GET", f"{MGMT}/getApi", namespace="guest", auth=alice.auth_key)
    assert (status, body["error"]) == (403, FORBIDDEN)
    assert (await hub.call("GET", f"{MGMT}/getApi", auth=alice.auth_key)) == (200, {"apis": []})
    status, body = await hub.call("DELETE", f"{MGMT}/deleteApi", basepath="/shop", auth=alice.auth_key)
    assert status == 404
    status, body = await create(hub, "/shop", "/plain", "GET", "plain")
    assert (status, body["error"]) == (400, "action '/guest/plain' is not a web action; make it one with "
                                            "`wsk action update plain --web true` (or 'web: true' in a manifest)")
    status, body = await create(hub, "/shop", "/gone", "GET", "gone")
    assert (status, body["error"]) == (404, "action '/guest/gone' does not exist; create it as a web action first")
    status, body = await create(hub, "/shop", "/b", "FETCH", "book")
    assert (status, body["error"]) == (400, "operation 'FETCH' is not supported; use one of GET, POST, PUT, "
                                            "DELETE, PATCH, HEAD, OPTIONS")
    status, body = await create(hub, "/shop", "/b", "GET", "book", responsetype="xml")
    assert (status, body["error"]) == (400, "responsetype 'xml' is not supported; use one of http, json, text, "
                                            "html, svg")
    assert [a["id"] for a in (await hub.call("GET", f"{MGMT}/getApi"))[1]["apis"]] == ["API:guest:/shop"]
    assert (await gateway(hub, "GET", "/shop/books/1"))[0] == 200


async def test_an_openapi_document_creates_every_route_it_names(hub):
    await put_action(hub, "book", BOOK, "python:default", annotations=WEB)
    swagger = {"swagger": "2.0", "basePath": "/library", "info": {"title": "library-api", "version": "1.0.0"},
               "paths": {"/books/{id}": {"get": {"x-openwhisk": {"namespace": "_", "package": "default",
                                                                 "action": "book"}}},
                         "/books": {"post": {"x-openwhisk": {"namespace": "guest", "action": "book"}}}}}

    status, created = await hub.call("POST", f"{MGMT}/createApi",
                                     {"apidoc": {"namespace": "_", "swagger": json.dumps(swagger)}})

    assert status == 200
    assert sorted(created["apidoc"]["paths"]) == ["/books", "/books/{id}"]
    assert created["apidoc"]["info"]["title"] == "library-api"
    status, _, body = await gateway(hub, "GET", "/library/books/9")
    assert (status, json.loads(body)) == (200, {"id": "9", "shelf": None, "path": "/books/9"})
    status, _, body = await gateway(hub, "POST", "/library/books", json={"id": "new"})
    assert (status, json.loads(body)["id"]) == (200, "new")
    swagger["paths"]["/books"]["post"]["x-openwhisk"] = {}
    status, body = await hub.call("POST", f"{MGMT}/createApi", {"apidoc": {"swagger": swagger}})
    assert (status, body["error"]) == (400, "swagger path /books post: 'x-openwhisk' must name the action "
                                            "(namespace, package, action)")
    status, body = await hub.call("POST", f"{MGMT}/createApi", {"apidoc": {"swagger": {"paths": {"/x": ["get"]}}}})
    assert (status, body["error"]) == (400, 'swagger path /x: expected a mapping of operations, e.g. {"get": {...}}')

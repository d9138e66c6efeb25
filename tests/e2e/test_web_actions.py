"""Web actions: /api/v1/web/{ns}/{pkg|default}/{action}[.ext][/path] (reference 1.6)."""

from __future__ import annotations

import json

from tests.plugins.hub import put_action

WEB = [{"key": "web-export", "value": True}, {"key": "raw-http", "value": False}, {"key": "final", "value": True}]
ECHO = "def main(args):\n    return args\n"
PAGE = ("def main(args):\n    return {'statusCode': 201, 'headers': {'X-Custom': 'yes', 'Content-Type': 'text/plain'},"
        " 'body': 'hi ' + args.get('name', 'nobody')}\n")


async def get(hub, path, **kwargs):
    async with hub.session.request(kwargs.pop("method", "GET"), f"{hub.apihost}/api/v1/web/{path}", **kwargs) as response:
        return response.status, response.headers, await response.read()


async def test_json_extension_gets_request_metadata(hub):
    await put_action(hub, "echo", ECHO, "python:default", annotations=WEB)
    status, headers, body = await get(hub, "guest/default/echo.json/extra/path?name=q", method="POST",
                                      json={"fromBody": 1}, headers={"X-Thing": "v"})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    args = json.loads(body)
    assert args["name"] == "q" and args["fromBody"] == 1
    assert args["__ow_method"] == "post" and args["__ow_path"] == "/extra/path"
    assert args["__ow_headers"]["x-thing"] == "v"


async def test_http_projection_and_default_extension(hub):
    await put_action(hub, "page", PAGE, "python:default", annotations=WEB)
    status, headers, body = await get(hub, "guest/default/page?name=ann")
    assert (status, headers["X-Custom"], headers["Content-Type"], body) == (201, "yes", "text/plain", b"hi ann")


async def test_not_exported_or_missing_is_404_and_reserved_names_400(hub):
    await put_action(hub, "hidden", ECHO, "python:default")
    status, _, _ = await get(hub, "guest/default/hidden.json")
    assert status == 404
    status, _, _ = await get(hub, "guest/default/nothing.json")
    assert status == 404
    await put_action(hub, "echo", ECHO, "python:default", annotations=WEB)
    status, _, body = await get(hub, "guest/default/echo.json?__ow_method=put")
    assert status == 400 and b"Request defines parameters that are not allowed" in body


async def test_require_whisk_auth_secret(hub):
    await put_action(hub, "guarded", ECHO, "python:default", annotations=WEB + [{"key": "require-whisk-auth", "value": "letmein"}])
    status, _, _ = await get(hub, "guest/default/guarded.json")
    assert status == 401
    status, _, _ = await get(hub, "guest/default/guarded.json", headers={"X-Require-Whisk-Auth": "letmein"})
    assert status == 200


async def test_options_answers_cors(hub):
    await put_action(hub, "echo", ECHO, "python:default", annotations=WEB)
    status, headers, _ = await get(hub, "guest/default/echo.json", method="OPTIONS")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"

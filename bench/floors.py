"""The floors the harness divides by: the least a server on this machine can do for the same request.

    python -m bench.floors aiohttp --port P              # minimal aiohttp handler, in-process function
    python -m bench.floors worker --socket PATH          # warm worker process answering on a Unix socket
    python -m bench.floors unix --port P --socket PATH   # aiohttp handler -> Unix socket -> that worker

Each handler reads the request body and answers `{}` as JSON, as triggerhub's noop action does.
The Unix-socket floor keeps one keep-alive connection pool to the worker, as a hub keeps its
warm runtime: it is the least an invoke through a separate action process can cost.
"""

from __future__ import annotations

import argparse
import json

from aiohttp import ClientSession, UnixConnector, web

EMPTY = json.dumps({})


def compute(body: bytes) -> str:
    """The in-process function: what a noop action computes."""
    return EMPTY


async def answer_in_process(request: web.Request) -> web.Response:
    return web.Response(text=compute(await request.read()), content_type="application/json")


def aiohttp_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer_in_process)
    return app


def unix_front_app(socket_path: str) -> web.Application:
    app = web.Application()

    async def session_context(app: web.Application):  # type: ignore[no-untyped-def]
        async with ClientSession(connector=UnixConnector(path=socket_path, limit=64)) as session:
            app["session"] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        async with request.app["session"].post("http://worker/run", data=await request.read()) as response:
            return web.Response(body=await response.read(), content_type="application/json")

    app.cleanup_ctx.append(session_context)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["aiohttp", "worker", "unix"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--socket", default="")
    args = parser.parse_args()
    if args.role == "aiohttp":
        web.run_app(aiohttp_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)
    elif args.role == "worker":
        web.run_app(aiohttp_app(), path=args.socket, print=None, access_log=None)
    else:
        web.run_app(unix_front_app(args.socket), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()

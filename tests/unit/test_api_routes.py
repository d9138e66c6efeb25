"""API gateway routes without I/O: path templates, and the OpenAPI document the hub renders read
back by the manifest deployer (`getApi` out, routes in)."""

from __future__ import annotations

from triggerhub.api.openapi import openapi_document
from triggerhub.manifests.routes import apidoc_of, routes_from_listing
from triggerhub.model import ApiRoute, ResponseType


def test_path_parameters_match_whole_segments_only() -> None:
    route = ApiRoute("guest", "/shop", "/books/{id}/pages/{page}", "GET", "/guest/page")

    assert route.path_parameters == ["id", "page"]
    assert route.match("/books/42/pages/7") == {"id": "42", "page": "7"}
    assert route.match("books/42/pages/7/") == {"id": "42", "page": "7"}
    assert route.match("/books/42/pages") is None
    assert route.match("/books/4/2/pages/7") is None
    assert ApiRoute("guest", "/", "/", "GET", "/guest/a").match("/") == {}
    assert ApiRoute("guest", "/", "/a.b", "GET", "/guest/a").match("/axb") is None


def test_the_rendered_openapi_document_reads_back_as_the_same_routes() -> None:
    routes = [ApiRoute("guest", "/shop", "/books/{id}", "GET", "/guest/shelf/book", ResponseType.JSON, "shop-api",
                       project="library"),
              ApiRoute("guest", "/shop", "/books/{id}", "DELETE", "/guest/drop", ResponseType.HTTP, "shop-api",
                       cors=False)]
    listing = {"apis": [{"id": "API:guest:/shop", "key": "API:guest:/shop",
                         "value": {"apidoc": openapi_document(routes, "http://127.0.0.1:3233")}}]}

    assert routes_from_listing(listing, "guest") == routes


def test_apidoc_is_what_the_npm_client_sends_plus_the_hubs_own_fields() -> None:
    route = ApiRoute("guest", "/shop", "/books", "POST", "/guest/shelf/book", ResponseType.HTTP, "shop-api",
                     project="library")

    assert apidoc_of(route) == {
        "namespace": "guest", "gatewayBasePath": "/shop", "gatewayPath": "/books", "gatewayMethod": "POST",
        "apiName": "shop-api", "id": "API:guest:/shop",
        "action": {"name": "shelf/book", "namespace": "guest", "backendMethod": "POST"},
        "cors": True, "project": "library"}

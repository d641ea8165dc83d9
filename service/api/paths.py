"""Where the API lives, written once: the routes (service/api/routes.py), the OpenAPI
document, the web page (which the server tells where to call) and face_search_client read
these. It imports nothing, so the client reads it without the server's dependencies."""

API = "/api/v2/face_search"  # the Face Search API v2's base path
V1 = "/backend/api/v1/request/face_search"  # the vendor's earlier paths, for deployed clients
DOCUMENT = "/api/v2/openapi.json"  # the OpenAPI document

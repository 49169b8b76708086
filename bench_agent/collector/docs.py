"""/docs: Swagger UI over the collector's OpenAPI description (/v1/openapi.json).

FastAPI's default /docs loads Swagger UI from a CDN (cdn.jsdelivr.net), which a
cluster's management network often cannot reach. Its files come here from the
swagger-ui-bundle package (PyPI, the Swagger UI release files) and are served by
the collector under /docs/assets, FastAPI's own pattern for offline docs
(fastapi.tiangolo.com/how-to/custom-docs-ui-assets/).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def mount(app: FastAPI) -> None:
    import swagger_ui_bundle  # type: ignore[import-untyped]  # ships no type hints

    app.mount(ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
              name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/v1/openapi.json",
            title=f"{app.title} · API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")

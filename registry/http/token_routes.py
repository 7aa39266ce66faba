"""The built-in token service endpoint (``GET``/``POST /token``)."""

from __future__ import annotations

from anyio import to_thread
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from auth.factory import AuthComponents
from auth.service import TokenResponse, parse_form
from registry.db.engine import Database

# The OAuth2 form is tiny; refuse anything larger before reading it whole.
_MAX_FORM = 64 * 1024


class TokenRoutes:
    def __init__(self, auth: AuthComponents, db: Database) -> None:
        self.auth = auth
        self.db = db

    def _client_ip(self, request: Request) -> str:
        return request.client.host if request.client else ""

    def _respond(self, result: TokenResponse) -> Response:
        headers = {**result.headers, "Cache-Control": "no-store"}
        return JSONResponse(result.body, status_code=result.status, headers=headers)

    def _run(self, call: str, *args: object) -> TokenResponse:
        service = self.auth.service
        assert service is not None

        # Failed-login counters are rows of this session: committed for refusals too.
        def work(session: Session) -> TokenResponse:
            result: TokenResponse = getattr(service, call)(session, *args)
            return result

        return self.db.commit_unlocked(work)

    async def get(self, request: Request) -> Response:
        result = await to_thread.run_sync(
            self._run,
            "handle_get",
            request.query_params.multi_items(),
            request.headers.get("authorization"),
            self._client_ip(request),
        )
        return self._respond(result)

    async def post(self, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM:
                return JSONResponse(
                    {"error": "invalid_request", "error_description": "form too large"},
                    status_code=400,
                )
        try:
            form = parse_form(body)
        except ValueError:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "malformed form"},
                status_code=400,
            )
        result = await to_thread.run_sync(self._run, "handle_post", form, self._client_ip(request))
        return self._respond(result)

    def routes(self) -> list[BaseRoute]:
        return [Route("/token", self.get, methods=["GET"]), Route("/token", self.post,
                                                                   methods=["POST"])]  # fmt: skip

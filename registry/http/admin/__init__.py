"""The admin REST API under ``/admin/v1/`` (see ``docs/admin.md``)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import registry
from auth.factory import AuthComponents
from registry.db.engine import Database
from registry.http.admin.account_routes import AccountApi
from registry.http.admin.auth import admin_authenticator
from registry.http.admin.framework import PREFIX, AdminRouter, Call, Endpoint, json_response
from registry.http.admin.openapi import build_document
from registry.http.admin.routes import AdminApi
from registry.services.admin_accounts import AccountAdmin
from registry.services.admin_catalog import CatalogService
from registry.services.admin_content import ContentReader
from registry.services.admin_gc import GcControl
from registry.services.admin_usage import UsageService
from registry.services.audit import AuditService
from registry.services.gc import GarbageCollector
from registry.services.inspect import InspectService
from registry.services.manifests import ManifestService
from registry.services.retention import RetentionService
from registry.settings import Settings
from storage.driver import Driver

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def build_admin_api(
    settings: Settings, db: Database, driver: Driver, manifests: ManifestService
) -> AdminApi:
    audit = AuditService(db)
    usage = UsageService(db)
    content = ContentReader(db, driver, manifests)
    catalog = CatalogService(db, driver, content, usage)
    collector = GarbageCollector(
        db,
        driver,
        review_delay=settings.gc_review_delay,
        upload_purge_after=settings.upload_purge_after_hours * 3600,
    )
    return AdminApi(
        catalog=catalog,
        manifests=manifests,
        inspector=InspectService(manifests, content),
        retention=RetentionService(db, driver, catalog, audit),
        gc=GcControl(db, collector, audit),
        usage=usage,
        audit=audit,
    )


def admin_routes(
    settings: Settings,
    db: Database,
    driver: Driver,
    manifests: ManifestService,
    auth: AuthComponents,
) -> list[BaseRoute]:
    api = build_admin_api(settings, db, driver, manifests)
    accounts = AccountAdmin(
        db, auth.passwords, api.audit, configured_public=auth.settings.public_repositories
    )
    endpoints = api.endpoints() + AccountApi(accounts).endpoints()
    document = build_document(endpoints, registry.__version__)

    async def openapi(call: Call) -> Response:
        return json_response(document)

    # Served without credentials: it describes the API, it reveals no data.
    endpoints.append(
        Endpoint("GET", "/openapi.json", "openapi", "This document", openapi, "meta",
                 authenticated=False)
    )  # fmt: skip
    authenticator = admin_authenticator(settings.admin_token, settings.auth_mode, db, auth)
    router = AdminRouter(endpoints, authenticator)
    return [Route(PREFIX + "/{rest:path}", router.dispatch, methods=METHODS)]

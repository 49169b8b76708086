"""The central collector: accepts signed reports from enrolled nodes, stores them once.

    settings.py   Settings: database URL, body limit, admin token, auto-enroll
    db.py         tables (SQLAlchemy Core), engines, Alembic migrations at start
    enrollment.py node keys: enroll, revoke, look up
    ingest.py     verify -> store, one transaction, exactly once (digest is unique)
    queries.py    the read side shared by the JSON API and the dashboard
    api.py        /v1/... JSON, /metrics, /healthz
    dashboard.py  server-rendered HTML (Jinja2, autoescaped) with inline SVG plots
    app.py        create_app(settings): the FastAPI application
    cli.py        what `bench-agent collector ...` calls

The collector imports model and attest; the agent never imports the collector. This
package's __init__ imports nothing heavy: `bench-agent --help` must stay fast.
"""

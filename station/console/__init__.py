"""The police post's web console: fleet, alerts, live wall, search and trace, evidence, nodes.

Server-rendered pages (Starlette/FastAPI + Jinja2) with a little JavaScript; the alert feed is
server-sent events. Every asset is served from ``static/`` (the post may be offline). Roles:
operator (watch, search, evidence), technician (health, IR, diagnostics — no footage), admin
(users, audit log). ``app.create_app`` is the composition root.
"""

"""Search and trace over the station's archive (issue 10's query API), when the console has one.

Inputs are validated here (known classes, colours of letters only, times in the ward's zone,
pole ids from the fleet) and handed to the archive as bound parameters — never as SQL.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from node.vision.appearance import COLOUR_NAMES
from station.console import auth
from station.console.pages.alerts import LABELS
from station.console.render import render

router = APIRouter()

COLOUR = re.compile(r"^[a-z]{0,16}$")


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, since: str = "", until: str = "", label: str = "", colour: str = "",
                node: str = "") -> HTMLResponse:
    u = auth.need(request, "search")
    c = auth.console(request)
    archive = c.archive
    errors = []
    label = label.strip().lower()
    if label and label not in LABELS:
        errors.append(f"unknown class {label[:40]!r}")
    colour = colour.strip().lower()
    if not COLOUR.match(colour):
        errors.append("colour: a colour name (letters only)")
    nodes = c.live.node_ids()
    if node and node not in nodes and not any(p.node_id == node for p in c.poles()):
        errors.append(f"unknown pole {node[:40]!r}")
    s, e = c.ward.parse_local(since), c.ward.parse_local(until)
    if since and s is None:
        errors.append("since: not a date and time")
    if until and e is None:
        errors.append("until: not a date and time")
    results = []
    asked = any((since, until, label, colour, node))
    if archive is not None and asked and not errors:
        results = archive.search(since=s, until=e, label=label or None, colour=colour or None,
                                 node=node or None, limit=200)
        auth.audit_act(request, u, "search", f"{label} {colour} {node} {since}..{until}"[:256],
                       detail=f"{len(results)} results")
    return render(request, "search.html", {
        "archive": archive is not None, "errors": errors, "results": results, "asked": asked,
        "labels": LABELS, "colours": COLOUR_NAMES, "nodes": nodes,
        "f": {"since": since[:32], "until": until[:32], "label": label,
              "colour": colour if COLOUR.match(colour) else "", "node": node if node in nodes else ""}},
        status_code=400 if errors else 200)

"""Search and trace over the station's archive (issue 10's query API), when the console has one.

Inputs are validated here (known classes, colours of letters only, times in the ward's zone,
pole ids from the fleet, "near pole P within R m" from the inventory's coordinates and a short
list of radii) and handed to the archive as bound parameters — never as SQL.

Results come a page at a time, newest first, paged by key: the "older" and "newer" links carry
a signed cursor (:mod:`station.console.cursor`) of the page's last or first row, so no page
costs more than the first, however deep. The header counts the matches up to ``COUNT_CAP``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from node.vision.appearance import COLOUR_NAMES
from station.archive.query import distance_m
from station.console import auth, cursor
from station.console.pages.alerts import LABELS
from station.console.render import render, translator

router = APIRouter()

COLOUR = re.compile(r"^[a-z]{0,16}$")
PAGE_SIZE = 50
COUNT_CAP = 1000
RADII = (100, 200, 500, 1000)
DEFAULT_RADIUS = 200


def _radius(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) in RADII else None


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, since: str = "", until: str = "", label: str = "", colour: str = "",
                node: str = "", near: str = "", radius: str = "", older: str = "",
                newer: str = "") -> HTMLResponse:
    u = auth.need(request, "search")
    c = auth.console(request)
    t = translator(request)
    archive = c.archive
    errors = []
    label = label.strip().lower()
    if label and label not in LABELS:
        errors.append(t("Unknown class {v}", v=repr(label[:40])))
    colour = colour.strip().lower()
    if not COLOUR.match(colour):
        errors.append(t("Colour: a colour name (letters only)"))
    nodes = c.live.node_ids()
    poles = {p.node_id: p for p in c.poles()}
    if node and node not in nodes and node not in poles:
        errors.append(t("Unknown pole {v}", v=repr(node[:40])))
    s, e = c.ward.parse_local(since), c.ward.parse_local(until)
    if since and s is None:
        errors.append(t("Since: not a date and time"))
    if until and e is None:
        errors.append(t("Until: not a date and time"))
    r_m = _radius(radius) if radius else DEFAULT_RADIUS
    if r_m is None:
        errors.append(t("Distance: one of {v} m", v=", ".join(map(str, RADII))))
    centre = None
    if near:
        p = poles.get(near)
        if p is None:
            errors.append(t("Unknown pole {v}", v=repr(near[:40])))
        elif p.lat is None or p.lon is None:
            errors.append(t("Pole {p} has no position in the inventory: no place to search around.",
                            p=p.name))
        else:
            centre = (p.lat, p.lon)
    key = None
    if older and newer:
        errors.append(t("The page link is damaged. Start again from the first page."))
    elif older or newer:
        try:
            key = cursor.decode(c.secret_key, older or newer)
        except cursor.CursorError:
            errors.append(t("The page link is damaged. Start again from the first page."))
    f = {"since": since[:32], "until": until[:32], "label": label,
         "colour": colour if COLOUR.match(colour) else "", "node": node if node in nodes else "",
         "near": near if near in poles else "", "radius": r_m or DEFAULT_RADIUS}
    ctx: dict[str, Any] = {"archive": archive is not None, "errors": errors, "labels": LABELS,
                           "colours": COLOUR_NAMES, "nodes": nodes, "poles": sorted(poles.values(),
                           key=lambda p: p.node_id), "radii": RADII, "f": f}
    asked = any((since, until, label, colour, node, near))
    ctx.update(asked=asked, results=[], around=[], older_url="", newer_url="", first_url="")
    if archive is None or not asked or errors:
        return render(request, "search.html", ctx, status_code=400 if errors else 200)

    radius_m = float(r_m)  # valid here (an invalid radius is an error above)
    q = archive.query(since=s, until=e, label=label or None, colour=colour or None, node=node or None,
                      near=centre, radius_m=radius_m, limit=PAGE_SIZE)
    page = None
    if newer and key is not None:  # the page above: asked oldest first from its first row
        back = archive.page(replace(q, newest_first=False, after=key))
        if back.more:
            page = replace(back, rows=back.rows[::-1], first=back.last, last=back.first)
            older_page, newer_page = True, True
        else:  # nothing above it: the newest rows are the first page
            key = None
    if page is None:
        page = archive.page(replace(q, after=key))
        older_page, newer_page = page.more, key is not None
    # a first page with nothing after it has its count; else count (up to the cap)
    whole = key is None and not page.more
    total = len(page.rows) if whole else archive.count(q, COUNT_CAP)
    rows = page.rows
    filters = {k: v for k, v in (("since", since), ("until", until), ("label", label), ("colour", colour),
                                 ("node", node), ("near", near), ("radius", str(r_m) if near else ""))
               if v}

    def link(**extra: str) -> str:
        return "/search?" + urlencode({**filters, **extra})

    if older_page and page.last is not None:
        ctx["older_url"] = link(older=cursor.encode(c.secret_key, page.last))
    if newer_page and page.first is not None:
        ctx["newer_url"] = link(newer=cursor.encode(c.secret_key, page.first))
    if key is not None:
        ctx["first_url"] = link()
    if total >= COUNT_CAP:
        header = t("Showing {n} of at least {total} results, newest first", n=len(rows), total=total)
    elif whole:
        header = t("{n} results", n=len(rows))
    else:
        header = t("Showing {n} of {total} results, newest first", n=len(rows), total=total)
    ctx.update(results=rows, header=header, total=total,
               around=sorted(p.node_id for p in poles.values() if p.lat is not None and p.lon is not None
                             and distance_m(centre, (p.lat, p.lon)) <= radius_m) if centre else [])
    where = f" near={near}/{r_m}m" if near else ""
    page_of = f", page after {key[1]}" if key is not None else ""
    auth.audit_act(request, u, "search", f"{label} {colour} {node}{where} {since}..{until}"[:256],
                   detail=f"{len(rows)} of {total}{'+' if total >= COUNT_CAP else ''} results{page_of}"[:256])
    return render(request, "search.html", ctx)

// The console's little JavaScript: the live alert feed (server-sent events), acknowledging,
// and refreshing the fleet. Pages work without it (plain forms and links).
"use strict";

function csrf() { return document.body.dataset.csrf; }

function ackButton(btn) {
  btn.addEventListener("click", async () => {
    const art = btn.closest(".alert");
    const body = new URLSearchParams({ node: art.dataset.node, csrf: csrf() });
    btn.disabled = true;
    const r = await fetch(`/alerts/${encodeURIComponent(art.dataset.id)}/ack`,
      { method: "POST", body, headers: { "X-CSRF-Token": csrf() } });
    if (r.ok) { markAcked(art, (await r.json()).by); } else { btn.disabled = false; }
  });
}

function markAcked(art, by) {
  const feed = document.getElementById("alerts");
  const b = art.querySelector("button.ack"); if (b) b.remove();
  art.querySelector(".acked").textContent = feed.dataset.ackedText.replace("{u}", by);
}

function showSnapshot(art) {
  const img = art.querySelector(".thumb img");
  img.src = `/snapshot/${encodeURIComponent(art.dataset.id)}.jpg`;
  img.hidden = false;
  const ph = art.querySelector(".nosnap"); if (ph) ph.remove();
}

function startFeed(feed) {
  const labels = JSON.parse(feed.dataset.labels || "{}");
  const tpl = document.getElementById("alert-template");
  const state = document.getElementById("feed-state");
  const wantLabel = feed.dataset.filterLabel, wantNode = feed.dataset.filterNode;
  feed.querySelectorAll("button.ack").forEach(ackButton);
  const es = new EventSource(feed.dataset.stream);
  es.onopen = () => { state.textContent = state.dataset.ok; state.className = "badge st-OK"; };
  es.onerror = () => { state.textContent = state.dataset.wait; state.className = "badge st-SILENT"; };
  const find = (id) => feed.querySelector(`.alert[data-id="${CSS.escape(id)}"]`);
  es.addEventListener("alert", (ev) => {
    const a = JSON.parse(ev.data);
    if ((wantLabel && a.label !== wantLabel) || (wantNode && a.node !== wantNode)) return;
    let art = find(a.id);
    if (!art) {
      art = tpl.content.firstElementChild.cloneNode(true);
      art.dataset.id = a.id; art.dataset.node = a.node; art.dataset.label = a.label;
      art.dataset.seenMs = String(performance.timeOrigin + performance.now());
      art.querySelector(".label").textContent = labels[a.label] || a.label;
      art.querySelector(".time").textContent = a.local_date;
      const nl = art.querySelector(".nodelink"); nl.textContent = a.node; nl.href = `/nodes/${encodeURIComponent(a.node)}`;
      art.querySelector(".thumb").href = `/snapshot/${encodeURIComponent(a.id)}.jpg`;
      art.querySelector(".trace").href = `/trace/${encodeURIComponent(a.id)}`;
      art.querySelector(".thumb img").hidden = true;
      ackButton(art.querySelector("button.ack"));
      feed.prepend(art);
      const none = document.getElementById("no-alerts"); if (none) none.hidden = true;
    }
    if (a.score !== null && a.score !== undefined) art.querySelector(".score").textContent = Math.round(a.score * 100) + "%";
    if (a.has_snapshot) showSnapshot(art);
  });
  es.addEventListener("snapshot", (ev) => {
    const s = JSON.parse(ev.data);
    const art = find(s.id);
    if (art) { showSnapshot(art); art.dataset.snapMs = String(performance.timeOrigin + performance.now()); }
  });
  es.addEventListener("ack", (ev) => { const k = JSON.parse(ev.data); const art = find(k.id); if (art) markAcked(art, k.by); });
  // the session ended (logged out elsewhere, account disabled, role changed): the page asks again
  es.addEventListener("ended", () => { es.close(); location.reload(); });
}

function refreshFleet(box) {
  setInterval(async () => {
    const r = await fetch(box.dataset.refresh, { headers: { Accept: "text/html" } });
    if (r.ok) box.innerHTML = await r.text();
  }, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  const feed = document.getElementById("alerts"); if (feed && feed.dataset.stream) startFeed(feed);
  const fleet = document.getElementById("fleet"); if (fleet) refreshFleet(fleet);
});

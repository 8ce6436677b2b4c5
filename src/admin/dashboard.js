// flowgate dashboard: polls this proxy's own JSON endpoints and redraws the page.
// Nothing else is fetched. Text from the JSON only ever goes in through textContent or
// setAttribute, never as markup.
(() => {
  "use strict";
  const POLL_MS = 1000;
  const TIMEOUT_MS = 3000;
  const HISTORY_MS = 15000;
  // As much as the proxy keeps (v1/dashboard/history: 15 minutes, one sample a second).
  const KEEP_MS = 15 * 60 * 1000;
  const MAX_SAMPLES = 1000;
  const GAP_MS = 3500;
  const HISTORY_ROWS = 10;
  const WINDOW = Number(document.body.dataset.window) || 5;
  const PALETTE = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#92400e"];
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  document.documentElement.classList.remove("nojs");

  let samples = [];
  let colors = {};
  let seenVersion = null;
  let historyAt = 0;
  let polls = 0;
  let lastOk = 0;
  let skew = 0; // server clock minus ours, from the Date header, when it is off by more than 2 s

  // ---- small helpers
  function h(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function s(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function setText(id, v) {
    const e = $(id);
    if (e && e.textContent !== String(v)) e.textContent = String(v);
  }
  const pct = (v) => {
    const p = v * 100;
    return Math.abs(p - Math.round(p)) < 0.05 ? Math.round(p) + "%" : p.toFixed(1) + "%";
  };
  const rate = (v) => (v < 10 ? v.toFixed(1) : String(Math.round(v)));
  const errPct = (v) => (v * 100).toFixed(2) + "%";
  const short = (v) => String(+v.toFixed(2));
  const two = (n) => String(n).padStart(2, "0");
  const clock = (d) => two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  function duration(secs) {
    const d = Math.floor(secs / 86400), hr = Math.floor(secs / 3600) % 24;
    const m = Math.floor(secs / 60) % 60, sec = secs % 60;
    if (d > 0) return d + "d " + hr + "h";
    if (hr > 0) return hr + "h " + m + "m";
    if (m > 0) return m + "m " + sec + "s";
    return sec + "s";
  }
  function ago(iso) {
    const t = Date.parse(iso);
    if (!isFinite(t)) return iso;
    const sec = Math.max(0, Math.round((Date.now() + skew - t) / 1000));
    if (sec < 60) return sec + " s ago";
    if (sec < 3600) return Math.floor(sec / 60) + " min ago";
    if (sec < 86400) return Math.floor(sec / 3600) + " h ago";
    return Math.floor(sec / 86400) + " d ago";
  }
  function colorOf(name) {
    return colors[name] || "#9ca3af";
  }
  function badge(ok, yes, no, bad) {
    return h("span", { class: "badge " + (ok ? "ok" : bad) }, ok ? yes : no);
  }

  async function getJSON(url) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const r = await fetch(url, { cache: "no-store", signal: ctl.signal, headers: { accept: "application/json" } });
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      const date = Date.parse(r.headers.get("date") || "");
      if (isFinite(date)) {
        const off = date - Date.now();
        skew = Math.abs(off) > 2000 ? off : 0;
      }
      return await r.json();
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- the current state
  function renderBar(names, targets) {
    const bar = $("sharebar");
    const have = {};
    for (const c of Array.from(bar.children)) {
      if (c.dataset.region && targets[c.dataset.region] && !have[c.dataset.region]) have[c.dataset.region] = c;
      else c.remove();
    }
    const parts = [];
    for (const n of names) {
      const t = targets[n];
      const seg = have[n] || h("span", { class: "seg", "data-region": n });
      seg.classList.toggle("down", !t.healthy);
      seg.style.setProperty("--c", colorOf(n));
      seg.style.width = (t.share * 100).toFixed(3) + "%";
      seg.title = n + ": " + pct(t.share) + (t.healthy ? "" : " (down)");
      if (!seg.firstChild) seg.append(h("b", { class: "name" }, n), h("span", { class: "pct" }));
      const label = pct(t.share);
      if (seg.lastChild.textContent !== label) seg.lastChild.textContent = label;
      bar.appendChild(seg);
      parts.push(n + " " + pct(t.share));
    }
    bar.setAttribute("aria-label", "share per target region: " + parts.join(", "));
  }

  function renderTargets(names, targets) {
    const rows = names.map((n) => {
      const t = targets[n];
      const tr = h("tr", { "data-region": n });
      const name = h("td");
      const sw = h("i", { class: "sw" });
      sw.style.setProperty("--c", colorOf(n));
      name.append(sw, n);
      if (t.local) name.append(" ", h("span", { class: "local" }, "(this region)"));
      const share = h("td", { class: "num share", id: "share-" + n, "data-region": n, "data-share": String(t.share) }, pct(t.share));
      const health = h("td", { class: "health" });
      health.append(badge(t.healthy, "healthy", "down", "bad"));
      if (t.outlier_share < 1) {
        const b = h("span", { class: "badge warn", title: "answers far more 5xx than the other regions" }, "5xx: keeps " + pct(t.outlier_share));
        health.append(" ", b);
      }
      const bypass = h("td", { class: "bypass" });
      bypass.append(t.bypass_active ? h("span", { class: "badge warn" }, "active") : h("span", { class: "badge off" }, "no"));
      const eps = Object.keys(t.endpoints || {}).sort().map((k) => k + " " + t.endpoints[k].healthy + "/" + t.endpoints[k].total);
      tr.append(
        name,
        share,
        health,
        h("td", { class: "mode" }, t.mode || "local"),
        h("td", { class: "wide path" }, t.path || (t.local ? "origins" : "none")),
        bypass,
        h("td", { class: "wide endpoints" }, eps.join(" · ")),
      );
      return tr;
    });
    if (!rows.length) {
      rows.push(h("tr"));
      rows[0].append(h("td", { colspan: "7", class: "empty" }, "no target regions"));
    }
    $("targets").tBodies[0].replaceChildren(...rows);

    const legend = $("legend-shares");
    legend.replaceChildren(
      ...names.map((n) => {
        const sw = h("i", { class: "sw" });
        sw.style.setProperty("--c", colorOf(n));
        const item = h("span");
        item.append(sw, n + " " + pct(targets[n].share));
        return item;
      }),
    );
  }

  function renderOrigins(origins) {
    const rows = Object.keys(origins).sort().map((n) => {
      const o = origins[n];
      const tr = h("tr", { "data-origin": n });
      const health = h("td");
      health.append(badge(o.healthy, "healthy", "down", "bad"));
      tr.append(
        h("td", {}, n),
        health,
        h("td", { class: "num" }, o.endpoints.healthy + "/" + o.endpoints.total),
        h("td", { class: "num" }, o.inflight),
      );
      return tr;
    });
    $("origins").tBodies[0].replaceChildren(...rows);
  }

  function renderHistory(list) {
    const rows = list.slice(0, HISTORY_ROWS).map((e) => {
      const tr = h("tr", { "data-version": String(e.version) });
      const when = h("td", { class: "when" });
      when.append(h("time", { datetime: e.applied_at, title: e.applied_at }, ago(e.applied_at)));
      tr.append(h("td", { class: "num" }, e.version), when, h("td", { class: "wide" }, e.who), h("td", { class: "note" }, e.note || ""));
      return tr;
    });
    if (!rows.length) {
      rows.push(h("tr"));
      rows[0].append(h("td", { colspan: "4", class: "empty" }, "no table applied yet"));
    }
    $("history").tBodies[0].replaceChildren(...rows);
  }

  function refreshTimes() {
    for (const t of $("history").querySelectorAll("time[datetime]")) {
      const v = ago(t.getAttribute("datetime"));
      if (t.textContent !== v) t.textContent = v;
    }
  }

  function applyStatus(st) {
    const targets = st.targets || {};
    const names = Object.keys(targets).sort();
    colors = {};
    names.forEach((n, i) => (colors[n] = PALETTE[i % PALETTE.length]));
    setText("region", st.region);
    setText("version", st.table_version);
    setText("note", st.table_note || "");
    setText("state", st.state);
    setText("uptime", duration(st.uptime_seconds || 0));
    setText("rps", rate(st.rps));
    setText("error-ratio", errPct(st.error_ratio));
    $("error-ratio").classList.toggle("bad", st.error_ratio > 0.01);
    setText("source-rps", rate(st.source_rps));
    setText("inflight", st.inflight_requests);
    setText("updated", clock(new Date()));
    document.title = "flowgate " + st.region + " · v" + st.table_version;
    renderBar(names, targets);
    renderTargets(names, targets);
    renderOrigins(st.origins || {});
    const sh = {};
    for (const n of names) sh[n] = targets[n].share;
    record({ t: Date.now(), rps: st.rps, err: st.error_ratio, v: st.table_version, sh: sh });
  }

  function record(p) {
    samples.push(p);
    const cut = p.t - KEEP_MS;
    while (samples.length && (samples[0].t < cut || samples.length > MAX_SAMPLES)) samples.shift();
  }

  // The samples the proxy kept before this page opened, on our clock: the charts start
  // with the last minutes instead of empty.
  async function loadHistory() {
    try {
      const doc = await getJSON("v1/dashboard/history");
      const kept = Array.isArray(doc && doc.samples) ? doc.samples : [];
      samples = kept
        .filter((p) => p && typeof p.at_ms === "number" && p.shares)
        .map((p) => ({ t: p.at_ms - skew, rps: p.rps, err: p.error_ratio, v: p.table_version, sh: p.shares }));
      document.body.dataset.history = String(samples.length);
    } catch (_) { /* an older proxy, or offline: the charts fill as the page polls */ }
  }

  // ---- charts
  function frame(svg, H) {
    const W = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 600);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.replaceChildren();
    return W;
  }
  function nice(v) {
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    const m = v / e;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : m <= 6 ? 6 : m <= 8 ? 8 : 10) * e;
  }
  function segments(list) {
    const out = [];
    let cur = [];
    for (const p of list) {
      if (cur.length && p.t - cur[cur.length - 1].t > GAP_MS) {
        out.push(cur);
        cur = [];
      }
      cur.push(p);
    }
    if (cur.length) out.push(cur);
    return out;
  }
  const pt = (x, y) => x.toFixed(1) + "," + y.toFixed(1);

  function axes(svg, g, vis, leftLabel, rightLabel) {
    for (let i = 0; i <= 4; i++) {
      const y = g.T + (g.ph * i) / 4;
      svg.append(s("line", { class: "grid", x1: g.L, x2: g.W - g.R, y1: y, y2: y }));
      if (leftLabel) svg.append(s("text", { x: g.L - 4, y: y + 3, "text-anchor": "end" }, leftLabel(4 - i)));
      if (rightLabel) svg.append(s("text", { x: g.W - g.R + 4, y: y + 3 }, rightLabel(4 - i)));
    }
    const tick = g.span <= 60000 ? 10000 : g.span <= 120000 ? 30000 : g.span <= 300000 ? 60000 : 180000;
    const step = g.pw < 320 ? 2 : 1;
    for (let k = 0; k * tick <= g.span; k += step) {
      const sec = (k * tick) / 1000;
      const label = k === 0 ? "now" : sec % 60 === 0 ? "-" + sec / 60 + " min" : "-" + sec + " s";
      const anchor = k === 0 ? "end" : k * tick === g.span ? "start" : "middle";
      svg.append(s("text", { x: g.x(g.now - k * tick), y: g.H - 5, "text-anchor": anchor }, label));
    }
    for (let i = 1; i < vis.length; i++) {
      if (vis[i].v === vis[i - 1].v) continue;
      const x = g.x(vis[i].t);
      const right = x > g.W - g.R - 24;
      svg.append(s("line", { class: "marker", x1: x, x2: x, y1: g.T, y2: g.T + g.ph }));
      svg.append(s("text", { x: right ? x - 3 : x + 3, y: g.T + 9, "text-anchor": right ? "end" : "start" }, "v" + vis[i].v));
    }
    if (vis.length < 2) {
      svg.append(s("text", { x: g.L + g.pw / 2, y: g.T + g.ph / 2, "text-anchor": "middle" }, "collecting samples…"));
    }
  }
  function geometry(svg, L, R) {
    const H = 180, T = 12, B = 20;
    const W = frame(svg, H);
    const now = Date.now();
    const pw = W - L - R;
    // At least a minute, then as much as the ring holds (up to KEEP_MS), in whole minutes.
    const age = samples.length ? now - samples[0].t : 0;
    const span = Math.min(KEEP_MS, Math.max(60000, Math.ceil(age / 60000) * 60000));
    const t0 = now - span;
    return { W, H, L, R, T, B, ph: H - T - B, pw, now, t0, span, x: (t) => L + ((t - t0) / span) * pw };
  }

  function drawTraffic(svg) {
    const g = geometry(svg, 40, 44);
    const vis = samples.filter((p) => p.t >= g.t0);
    const rMax = nice(Math.max(1, ...vis.map((p) => p.rps)));
    const eMax = nice(Math.max(0.01, ...vis.map((p) => p.err)));
    axes(svg, g, vis, (k) => short((rMax * k) / 4), (k) => short((eMax * 100 * k) / 4) + "%");
    const yR = (v) => g.T + g.ph - (v / rMax) * g.ph;
    const yE = (v) => g.T + g.ph - (v / eMax) * g.ph;
    for (const seg of segments(vis)) {
      if (seg.length < 2) continue;
      const r = seg.map((p) => pt(g.x(p.t), yR(p.rps)));
      const base = pt(g.x(seg[seg.length - 1].t), g.T + g.ph) + " " + pt(g.x(seg[0].t), g.T + g.ph);
      svg.append(s("polygon", { class: "a-rps", points: r.join(" ") + " " + base }));
      svg.append(s("polyline", { class: "l-rps", points: r.join(" ") }));
      svg.append(s("polyline", { class: "l-err", points: seg.map((p) => pt(g.x(p.t), yE(p.err))).join(" ") }));
    }
  }

  function drawShares(svg) {
    const g = geometry(svg, 40, 12);
    const vis = samples.filter((p) => p.t >= g.t0);
    axes(svg, g, vis, (k) => k * 25 + "%", null);
    const names = Object.keys(colors);
    for (const p of vis) for (const n in p.sh) if (!names.includes(n)) names.push(n);
    const y = (v) => g.T + g.ph - v * g.ph;
    for (const seg of segments(vis)) {
      if (seg.length < 2) continue;
      const below = seg.map(() => 0);
      for (const n of names) {
        const top = seg.map((p, i) => below[i] + (p.sh[n] || 0));
        if (top.every((v, i) => v === below[i])) continue;
        const up = seg.map((p, i) => pt(g.x(p.t), y(top[i])));
        const down = seg.map((p, i) => pt(g.x(p.t), y(below[i]))).reverse();
        const poly = s("polygon", { class: "a-share", "data-region": n, points: up.concat(down).join(" ") });
        poly.setAttribute("fill", colorOf(n));
        poly.append(s("title", {}, n));
        svg.append(poly);
        top.forEach((v, i) => (below[i] = v));
      }
    }
  }

  function draw() {
    drawTraffic($("chart-traffic"));
    drawShares($("chart-shares"));
  }

  // ---- the loop
  function setLive(state, text) {
    const e = $("live");
    e.dataset.state = state;
    if (e.textContent !== text) e.textContent = text;
  }

  async function poll() {
    try {
      const st = await getJSON("v1/status?window=" + WINDOW);
      applyStatus(st);
      polls++;
      lastOk = Date.now();
      if (st.table_version !== seenVersion || Date.now() - historyAt > HISTORY_MS) {
        const list = await getJSON("v1/table/history");
        renderHistory(Array.isArray(list) ? list : []);
        seenVersion = st.table_version;
        historyAt = Date.now();
      }
      refreshTimes();
      setLive("live", "live");
    } catch (e) {
      setLive("offline", lastOk ? "offline since " + clock(new Date(lastOk)) : "offline");
    }
    draw();
    document.body.dataset.polls = String(polls);
    setTimeout(poll, POLL_MS);
  }

  let pending = false;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  });
  setLive("snapshot", "connecting…");
  loadHistory().then(() => {
    draw();
    poll();
  });
})();

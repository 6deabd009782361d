// The internal dashboard: reads the KPI API with the staff token kept in localStorage.
(function () {
  "use strict";
  const API = "/internal/analytics/kpis";
  const TOKEN_KEY = "villageAnalyticsToken";
  const $ = (id) => document.getElementById(id);
  const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
  const TOP_PAGE = 10;  // rows per page of the top table
  // The KPIs the fixed panels chart: the trend panel never offers them again.
  const FIXED = ["daily-active-villages", "weekly-active-villages", "monthly-active-villages", "session-duration",
                 "dialogue-opens", "command-executions", "events", "events-by-type"];
  // Daily, WAU and MAU often coincide (a steady population): the widest line is drawn underneath,
  // each in its own dash, width and point style, so every one stays visible on top of the others.
  const ACTIVE_STYLES = [
    { borderWidth: 2, pointStyle: "circle", pointRadius: 2.5, order: 1 },
    { borderWidth: 4, borderDash: [10, 6], pointStyle: "rect", pointRadius: 3.5, order: 2 },
    { borderWidth: 9, borderColor: COLORS[2] + "77", pointStyle: "triangle", pointRadius: 5, order: 3 },
  ];
  const state = { charts: {}, pollSeconds: 60, timer: null, loads: 0, lastError: null, noun: "actors",
                  topOffset: 0, topNext: null, topKey: "", last: null };
  window.dashboard = state;

  if (window["chartjs-chart-matrix"] && window.Chart && !Chart.registry.controllers.get("matrix")) {
    const m = window["chartjs-chart-matrix"];
    Chart.register(m.MatrixController, m.MatrixElement);
  }

  // A token handed over in the URL fragment (never sent to the server) is stored, then removed.
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    localStorage.setItem(TOKEN_KEY, hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = () => localStorage.getItem(TOKEN_KEY) || "";

  function isoDay(d) { return d.toISOString().slice(0, 10); }
  function defaultRange() {
    const end = new Date();
    const start = new Date(end.getTime() - 13 * 86400000);
    $("start").value = $("start").value || isoDay(start);
    $("end").value = $("end").value || isoDay(end);
  }

  function setStatus(kind, text) {
    $("status").dataset.state = kind;
    $("status").textContent = text;
    document.body.dataset.state = kind;
  }

  async function get(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
    if (!resp.ok) {
      let detail = resp.statusText;
      try { const body = await resp.json(); detail = body.detail || body.error || detail; } catch (e) { /* not JSON */ }
      const err = new Error(resp.status + ": " + detail);
      err.status = resp.status;
      throw err;
    }
    return resp;
  }
  const json = async (path) => (await get(path)).json();

  function lineChart(id, labels, datasets, type, plugins) {
    const cfg = {
      type: type || "line",
      data: { labels, datasets: datasets.map((d, i) => ({
        borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length] + "99",
        tension: 0.2, pointRadius: 2, spanGaps: false, ...d })) },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
                 interaction: { mode: "index", intersect: false }, plugins: plugins || {},
                 scales: type === "bar" ? { x: { stacked: true }, y: { stacked: true, beginAtZero: true } }
                                        : { y: { beginAtZero: true } } },
    };
    const old = state.charts[id];
    if (old) {
      old.data = cfg.data;
      old.update();
    } else {
      state.charts[id] = new Chart($(id), cfg);
    }
  }

  // The weekday x hour heatmap's shade: a log scale, so an hour with a handful of events still shows
  // beside one with thousands (on a linear scale it would be as pale as an empty hour).
  const HEAT_RGB = "37, 99, 235";
  function heatAlpha(v, max) {
    return v ? 0.15 + 0.85 * Math.log1p(v) / Math.log1p(Math.max(max, 1)) : 0.03;
  }
  const heatColor = (v, max) => (v === null || v === undefined ? "#d1d5db" : "rgba(" + HEAT_RGB + ", " + heatAlpha(v, max).toFixed(3) + ")");
  state.heatColor = heatColor;

  function heatLegend(max) {
    const steps = [0, 1];
    for (let v = 10; v < max; v *= 10) steps.push(v);
    if (max > 1) steps.push(max);
    const legend = $("heatmap-legend");
    const item = (color, text) => {
      const span = document.createElement("span");
      const sw = document.createElement("i");
      sw.className = "swatch";
      sw.style.background = color;
      span.append(sw, document.createTextNode(text));
      return span;
    };
    const title = document.createElement("span");
    title.className = "scale";
    title.textContent = "Log scale (events per cell):";
    legend.replaceChildren(title, ...steps.map((v) => item(heatColor(v, max), Number(v).toLocaleString())),
                           item(heatColor(null, max), "suppressed (fewer than k " + state.noun + ")"));
  }

  function heatmap(cells) {
    const max = Math.max(1, ...cells.map((c) => c.value || 0));
    const days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const hours = Array.from({ length: 24 }, (_, h) => String(h));
    const data = cells.map((c) => ({ x: String(c.hour), y: days[c.weekday], v: c.value }));
    const cfg = {
      type: "matrix",
      data: { datasets: [{ label: "events", data,
        backgroundColor: (ctx) => heatColor(ctx.raw ? ctx.raw.v : null, max),
        width: ({ chart }) => (chart.chartArea || {}).width / 24 - 1,
        height: ({ chart }) => (chart.chartArea || {}).height / 7 - 1 }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: {
          title: (items) => items[0].raw.y + " " + items[0].raw.x + ":00 UTC",
          label: (item) => item.raw.v === null ? "suppressed (fewer than k " + state.noun + ")" : item.raw.v + " events" } } },
        scales: { x: { type: "category", labels: hours, offset: true, grid: { display: false } },
                  y: { type: "category", labels: days, offset: true } } },
    };
    const old = state.charts["chart-heatmap"];
    if (old) { old.data = cfg.data; old.update(); } else { state.charts["chart-heatmap"] = new Chart($("chart-heatmap"), cfg); }
    heatLegend(max);
  }

  // The profile's own noun for its actors (seed 003's villages, seed 004's users): the unit of its
  // total/new actor KPIs, else of its actor uniques (a uniques KPI of no payload field).
  function actorNoun(listing) {
    const k = listing.kpis.find((x) => (x.kind === "total_actors" || x.kind === "new_actors") && x.unit)
           || listing.kpis.find((x) => x.kind === "uniques" && !x.field && x.unit);
    return k ? k.unit : "actors";
  }

  // A failed load leaves no old numbers on screen under the error banner; the next good load redraws.
  function clearStale() {
    for (const chart of Object.values(state.charts)) {
      chart.data.labels = [];
      chart.data.datasets = [];
      chart.update();
    }
    $("totals").replaceChildren();
    $("heatmap-legend").replaceChildren();
    for (const table of document.querySelectorAll("main table")) table.querySelector("tbody").replaceChildren();
    $("top-page").textContent = "";
    document.querySelector("#top .pager").hidden = true;
    document.querySelector("main").dataset.stale = "true";
  }

  function card(label, summary, fmt) {
    const div = document.createElement("div");
    div.className = "card";
    div.dataset.kpi = summary.kpi;
    const f = fmt || ((v) => Number(v).toLocaleString());
    const pct = summary.delta_pct;
    const cls = summary.delta > 0 ? "up" : summary.delta < 0 ? "down" : "";
    const deltaText = pct === null ? (summary.previous.total ? "" : "no data the week before")
                                   : (pct > 0 ? "+" : "") + pct + "% vs " + summary.previous.start + "–" + summary.previous.end;
    div.innerHTML = '<div class="label"></div><div class="value"></div><div class="delta ' + cls + '"></div>';
    div.querySelector(".label").textContent = label;
    div.querySelector(".value").textContent = f(summary.total);
    div.querySelector(".delta").textContent = deltaText;
    div.title = summary.total_means;
    return div;
  }

  // Total and new actors (seed 003's villages, seed 004's users): the range's last week against the week before.
  async function actorCards(listing, end) {
    const kpis = listing.kpis.filter((k) => k.declared_kind === "total_actors" || k.declared_kind === "new_actors");
    const from = isoDay(new Date(Date.parse(end + "T00:00:00Z") - 6 * 86400000));
    const sums = await Promise.all(kpis.map((k) => json(API + "/" + k.name + "/summary?start=" + from + "&end=" + end)));
    return kpis.map((k, i) => card(k.declared_kind === "total_actors" ? "Total " + k.unit + " (to " + end + ")"
                                                                      : "New " + k.unit + " (7 days to " + end + ")", sums[i]));
  }

  async function load() {
    const start = $("start").value, end = $("end").value;
    const q = "start=" + start + "&end=" + end;
    const id = ++state.loads;
    setStatus("loading", "Loading " + start + " to " + end + "…");
    try {
      const listing = await json(API);
      const known = new Map(listing.kpis.map((k) => [k.name, k]));
      state.noun = actorNoun(listing);
      for (const span of document.querySelectorAll(".actor-noun")) span.textContent = state.noun;
      // a fixed panel whose KPI the profile does not serve is not shown (seed 003's dialogue opens elsewhere)
      $("dialogue").hidden = !known.has("dialogue-opens");
      $("command").hidden = !known.has("command-executions");
      // a KPI the active profile does not serve is shown as such, never fetched
      const opt = (name, path) => (known.has(name) ? json(API + "/" + name + path) : Promise.resolve(null));
      const [dav, wau, mau, avg, p50, p95, dia, cmd, types, heat, sDav, sDia, sCmd, sAvg, sEv] = await Promise.all([
        opt("daily-active-villages", "?" + q), opt("weekly-active-villages", "?" + q),
        opt("monthly-active-villages", "?" + q), opt("session-duration", "?metric=avg&" + q),
        opt("session-duration", "?metric=p50&" + q), opt("session-duration", "?metric=p95&" + q),
        opt("dialogue-opens", "?" + q), opt("command-executions", "?" + q),
        opt("events-by-type", "?" + q), opt("events", "/heatmap?" + q),
        opt("daily-active-villages", "/summary?" + q), opt("dialogue-opens", "/summary?" + q),
        opt("command-executions", "/summary?" + q), opt("session-duration", "/summary?metric=avg&" + q),
        opt("events", "/summary?" + q),
      ]);
      if (id !== state.loads) return;  // a newer load started meanwhile
      state.pollSeconds = Math.max(listing.cache_seconds || 60, 5);
      const labels = (dav || types || []).map((r) => r.date);
      const vals = (rows) => (rows || []).map((r) => r.value);
      lineChart("chart-active", labels, [
        { label: "daily", data: vals(dav) }, { label: "WAU (7 d)", data: vals(wau) }, { label: "MAU (30 d)", data: vals(mau) },
      ].map((d, i) => ({ ...d, ...ACTIVE_STYLES[i] })), "line", { legend: { labels: { usePointStyle: true, boxHeight: 8 } } });
      lineChart("chart-session", labels, [
        { label: "avg", data: vals(avg) }, { label: "p50", data: vals(p50) }, { label: "p95", data: vals(p95) }]);
      lineChart("chart-dialogue", labels, [{ label: "dialogue opens", data: vals(dia) }], "bar");
      lineChart("chart-command", labels, [{ label: "command executions", data: vals(cmd) }], "bar");
      const typeRows = types || [];
      const names = [...new Set(typeRows.map((r) => r.event_name))].sort();
      lineChart("chart-types", labels, names.map((n) => ({
        label: n, data: labels.map((d) => { const r = typeRows.find((t) => t.date === d && t.event_name === n); return r ? r.value : 0; }) })), "bar");
      if (heat) heatmap(heat.cells);
      const actors = await actorCards(listing, end);
      if (id !== state.loads) return;
      const totals = $("totals");
      totals.replaceChildren(...actors, ...[
        ["Distinct active " + state.noun, sDav], ["Dialogue opens", sDia], ["Command executions", sCmd],
        ["Avg session (s)", sAvg, (v) => Number(v).toFixed(1)], ["Events", sEv],
      ].filter(([, s]) => s).map(([label, s, fmt]) => card(label, s, fmt)));
      await declaredPanels(listing, q, id);
      if (id !== state.loads) return;
      state.lastError = null;
      delete document.querySelector("main").dataset.stale;
      if (!sEv || sEv.total === 0) {
        setStatus("empty", "No events between " + start + " and " + end + ".");
      } else {
        setStatus("ready", "Showing " + start + " to " + end + " (UTC days of event time). Refreshes every " + state.pollSeconds + " s.");
      }
    } catch (err) {
      if (id !== state.loads) return;
      state.lastError = String(err.message || err);
      clearStale();
      const hint = err.status === 401 || err.status === 403 ? " — paste a staff token above." : "";
      setStatus("error", "Could not load KPIs: " + state.lastError + hint);
    }
    schedule();
  }

  function fillSelect(select, kpis, preferred) {
    const current = select.value;
    select.replaceChildren(...kpis.map((k) => new Option(k.name, k.name)));
    const names = kpis.map((k) => k.name);
    select.value = names.includes(current) ? current : names.includes(preferred) ? preferred : names[0] || "";
    select.hidden = kpis.length === 0;
  }

  function note(fig, text) {
    const p = fig.querySelector(".not-configured");
    p.textContent = text || "";
    p.hidden = !text;
  }

  // Whether a KPI's daily series is one a fixed panel above already charts.
  function repeatsAbove(k, known) {
    if (FIXED.includes(k.name)) return true;
    if (k.kind === "uniques" && !k.field) return true;  // the actors: the active chart (seed 004's dau)
    if (k.kind === "session") return true;
    const events = k.events || [];
    if (k.kind === "count" && !events.length) return true;  // every event: events by type
    const only = (e) => events.length === 1 && events[0] === e;
    return k.kind === "count" && ((only("dialogue_open") && known.has("dialogue-opens"))
                                   || (only("command_executed") && known.has("command-executions")));
  }

  // The trend panel: a declared daily KPI not charted above ("installs" first). A count that
  // repeats a chart above but has a breakdown of its own (seed 003's commands by name) is shown
  // broken down by it, never as the same totals again.
  function trendChoices(listing) {
    const known = new Set(listing.kpis.map((k) => k.name));
    const out = [];
    for (const k of listing.kpis) {
      if (k.top || ["session", "retention", "total_actors", "new_actors"].includes(k.kind) || FIXED.includes(k.name)) continue;
      if (!repeatsAbove(k, known)) out.push({ ...k, breakdown: null });
      else if (k.kind === "count" && (k.group_by || []).length) out.push({ ...k, breakdown: k.group_by[0] });
    }
    return out;
  }

  async function declaredPanels(listing, q, id) {
    const trends = trendChoices(listing);
    fillSelect($("trend-kpi"), trends, "installs");
    const trendName = $("trend-kpi").value;
    const choice = trends.find((k) => k.name === trendName);
    const by = choice ? choice.breakdown : null;
    $("trend-title").textContent = (trendName.includes("install") ? "Install trends" : "Trend") + (by ? " by " + by : "");
    const [trend] = await Promise.all([
      trendName ? json(API + "/" + trendName + "?" + (by ? "group_by=" + by + "&" : "") + q) : null,
      topTable(listing, q, id),
    ]);
    if (id !== state.loads) return;
    note($("trend"), trend ? "" : "This profile (" + listing.profile + ") declares no daily KPI not charted above.");
    const days = [...new Set((trend || []).map((r) => r.date))];
    if (by) {
      const groups = [...new Set(trend.map((r) => r[by]))].sort();
      lineChart("chart-trend", days, groups.map((g) => ({ label: g, data: days.map((d) => {
        const r = trend.find((x) => x.date === d && x[by] === g); return r ? r.value : 0; }) })), "bar");
    } else {
      lineChart("chart-trend", days, [{ label: trendName || "none", data: (trend || []).map((r) => r.value) }], "bar");
    }
    await cohortTable(listing, q, id);
    if (window.seed000Panels) await window.seed000Panels.render(listing, q, () => id !== state.loads, json);
  }

  // The top-N table, a page of TOP_PAGE rows at a time (the route's offset= and next_offset).
  async function topTable(listing, q, id) {
    const tops = listing.kpis.filter((k) => k.top);
    fillSelect($("top-kpi"), tops, "install-count");
    const topName = $("top-kpi").value;
    // a KPI that keeps an all-time table (seed 000's install_count per server) offers it
    const keeps = tops.some((k) => k.name === topName && k.all_time);
    $("top-all-time-label").hidden = !keeps;
    const allTime = keeps && $("top-all-time").checked ? "&all_time=1" : "";
    if (topName + "?" + q + allTime !== state.topKey) {  // another KPI, range or table: first page
      state.topKey = topName + "?" + q + allTime;
      state.topOffset = 0;
    }
    const top = topName ? await json(API + "/" + topName + "/top?limit=" + TOP_PAGE + "&offset=" + state.topOffset
                                     + "&" + q + allTime) : null;
    if (id !== state.loads) return;
    state.last = { listing, q };
    state.topNext = top ? top.next_offset : null;
    note($("top"), top ? (top.rows.length ? "" : top.offset ? "No rows on this page." : "Nothing counted in this range.")
                       : "This profile (" + listing.profile + ") declares no top-N KPI.");
    const body = $("top-table").querySelector("tbody");
    body.replaceChildren(...(top ? top.rows : []).map((row) => {
      const tr = document.createElement("tr");
      const key = document.createElement("td"), value = document.createElement("td");
      key.textContent = row.key;
      value.textContent = row.value === null ? "suppressed (fewer than k)" : Number(row.value).toLocaleString();
      tr.append(key, value);
      return tr;
    }));
    document.querySelector("#top .pager").hidden = !top || (!top.offset && top.next_offset === null);
    $("top-prev").disabled = !top || !top.offset;
    $("top-next").disabled = !top || top.next_offset === null;
    const total = top && top.total_rows !== undefined ? " of " + Number(top.total_rows).toLocaleString() : "";
    $("top-page").textContent = top && top.rows.length
      ? "rows " + (top.offset + 1) + "–" + (top.offset + top.rows.length) + total : "";
  }

  async function topPage(forward) {
    if (!state.last) return;
    const offset = forward ? state.topNext : Math.max(0, state.topOffset - TOP_PAGE);
    if (offset === null || offset === undefined) return;
    state.topOffset = offset;
    try {
      await topTable(state.last.listing, state.last.q, state.loads);
    } catch (err) {
      state.lastError = String(err.message || err);
      clearStale();
      setStatus("error", "Could not load the top table: " + state.lastError);
    }
  }

  // The cohort table of a retention KPI: one row per day D, one column per offset N (D+N).
  async function cohortTable(listing, q, id) {
    const kpis = listing.kpis.filter((k) => k.declared_kind === "retention");
    fillSelect($("retention-kpi"), kpis, "village-retention");
    const name = $("retention-kpi").value;
    const offsets = name ? kpis.find((k) => k.name === name).after : [];
    const series = await Promise.all(offsets.map((n) => json(API + "/" + name + "?after=" + n + "&" + q)));
    if (id !== state.loads) return;
    note($("retention"), name ? "" : "This profile (" + listing.profile + ") declares no retention KPI.");
    const head = $("cohort-table").querySelector("thead tr");
    head.replaceChildren(...["cohort day", ...offsets.map((n) => "D+" + n)].map((t) => {
      const th = document.createElement("th");
      th.textContent = t;
      return th;
    }));
    const rows = series.length ? series[0].map((row, i) => [row.date, ...series.map((s) => s[i].value)]) : [];
    $("cohort-table").querySelector("tbody").replaceChildren(...rows.map(([d, ...values]) => {
      const tr = document.createElement("tr");
      tr.dataset.date = d;
      const cells = [d, ...values.map((v) => (v === null ? "—" : (100 * v).toFixed(1) + "%"))];
      tr.append(...cells.map((t) => { const td = document.createElement("td"); td.textContent = t; return td; }));
      return tr;
    }));
  }

  // Poll no faster than the API's cache lifetime: sooner would only return cached answers.
  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(load, state.pollSeconds * 1000);
  }

  async function exportCsv() {
    try {
      const resp = await get(API + ".csv?start=" + $("start").value + "&end=" + $("end").value);
      const url = URL.createObjectURL(await resp.blob());
      const a = document.createElement("a");
      a.href = url;
      a.download = "kpis_" + $("start").value + "_" + $("end").value + ".csv";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (err) {
      setStatus("error", "Export failed: " + (err.message || err));
    }
  }

  $("controls").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("export").addEventListener("click", exportCsv);
  $("trend-kpi").addEventListener("change", load);
  $("top-kpi").addEventListener("change", load);
  $("top-all-time").addEventListener("change", load);
  $("top-prev").addEventListener("click", () => topPage(false));
  $("top-next").addEventListener("click", () => topPage(true));
  $("retention-kpi").addEventListener("change", load);
  $("search-platform").addEventListener("change", load);
  $("save-token").addEventListener("click", () => { localStorage.setItem(TOKEN_KEY, $("token").value.trim()); $("token").value = ""; load(); });
  state.load = load;
  defaultRange();
  if (typeof Chart === "undefined") {
    setStatus("error", "The chart library is not installed on the server (run `npm ci`).");
  } else {
    load();
  }
})();

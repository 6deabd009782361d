// The internal dashboard: reads the KPI API with the staff token kept in localStorage.
(function () {
  "use strict";
  const API = "/internal/analytics/kpis";
  const TOKEN_KEY = "villageAnalyticsToken";
  const $ = (id) => document.getElementById(id);
  const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
  const state = { charts: {}, pollSeconds: 60, timer: null, loads: 0, lastError: null };
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

  function lineChart(id, labels, datasets, type) {
    const cfg = {
      type: type || "line",
      data: { labels, datasets: datasets.map((d, i) => ({
        borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length] + "99",
        tension: 0.2, pointRadius: 2, spanGaps: false, ...d })) },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
                 interaction: { mode: "index", intersect: false },
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

  function heatmap(cells) {
    const max = Math.max(1, ...cells.map((c) => c.value || 0));
    const days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const hours = Array.from({ length: 24 }, (_, h) => String(h));
    const data = cells.map((c) => ({ x: String(c.hour), y: days[c.weekday], v: c.value }));
    const cfg = {
      type: "matrix",
      data: { datasets: [{ label: "events", data,
        backgroundColor: (ctx) => {
          const v = ctx.raw && ctx.raw.v;
          if (v === null || v === undefined) return "#e5e7eb";
          return "rgba(37, 99, 235, " + (0.05 + 0.95 * v / max).toFixed(3) + ")";
        },
        width: ({ chart }) => (chart.chartArea || {}).width / 24 - 1,
        height: ({ chart }) => (chart.chartArea || {}).height / 7 - 1 }] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: {
          title: (items) => items[0].raw.y + " " + items[0].raw.x + ":00 UTC",
          label: (item) => item.raw.v === null ? "suppressed (fewer than k villages)" : item.raw.v + " events" } } },
        scales: { x: { type: "category", labels: hours, offset: true, grid: { display: false } },
                  y: { type: "category", labels: days, offset: true } } },
    };
    const old = state.charts["chart-heatmap"];
    if (old) { old.data = cfg.data; old.update(); } else { state.charts["chart-heatmap"] = new Chart($("chart-heatmap"), cfg); }
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
        { label: "daily", data: vals(dav) }, { label: "WAU (7 d)", data: vals(wau) }, { label: "MAU (30 d)", data: vals(mau) }]);
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
        ["Distinct active villages", sDav], ["Dialogue opens", sDia], ["Command executions", sCmd],
        ["Avg session (s)", sAvg, (v) => Number(v).toFixed(1)], ["Events", sEv],
      ].filter(([, s]) => s).map(([label, s, fmt]) => card(label, s, fmt)));
      await declaredPanels(listing, q, id);
      if (id !== state.loads) return;
      state.lastError = null;
      if (!sEv || sEv.total === 0) {
        setStatus("empty", "No events between " + start + " and " + end + ".");
      } else {
        setStatus("ready", "Showing " + start + " to " + end + " (UTC days of event time). Refreshes every " + state.pollSeconds + " s.");
      }
    } catch (err) {
      if (id !== state.loads) return;
      state.lastError = String(err.message || err);
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

  // Install trends (any declared daily KPI, "installs" first) and a top-N table, from the profile's catalog.
  async function declaredPanels(listing, q, id) {
    // the KPIs the fixed panels above already chart, and the event totals, are not offered again
    const charted = ["daily-active-villages", "weekly-active-villages", "monthly-active-villages", "session-duration",
                     "dialogue-opens", "command-executions", "events", "events-by-type"];
    const trends = listing.kpis.filter((k) => !charted.includes(k.name) && !k.top
                                                && !["session", "retention", "total_actors", "new_actors"].includes(k.kind));
    const tops = listing.kpis.filter((k) => k.top);
    fillSelect($("trend-kpi"), trends, "installs");
    fillSelect($("top-kpi"), tops, "install-count");
    const trendName = $("trend-kpi").value, topName = $("top-kpi").value;
    $("trend-title").textContent = trendName.includes("install") ? "Install trends" : "Trend";
    const [trend, top] = await Promise.all([
      trendName ? json(API + "/" + trendName + "?" + q) : null,
      topName ? json(API + "/" + topName + "/top?limit=10&" + q) : null,
    ]);
    if (id !== state.loads) return;
    note($("trend"), trend ? "" : "This profile (" + listing.profile + ") declares no install or other daily KPI.");
    lineChart("chart-trend", (trend || []).map((r) => r.date),
              [{ label: trendName || "none", data: (trend || []).map((r) => r.value) }], "bar");
    note($("top"), top ? (top.rows.length ? "" : "Nothing counted in this range.")
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
    await cohortTable(listing, q, id);
    if (window.seed000Panels) await window.seed000Panels.render(listing, q, () => id !== state.loads, json);
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

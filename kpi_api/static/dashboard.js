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

  async function load() {
    const start = $("start").value, end = $("end").value;
    const q = "start=" + start + "&end=" + end;
    const id = ++state.loads;
    setStatus("loading", "Loading " + start + " to " + end + "…");
    try {
      const [listing, dav, wau, mau, avg, p50, p95, dia, cmd, types, heat, sDav, sDia, sCmd, sAvg, sEv] = await Promise.all([
        json(API), json(API + "/daily-active-villages?" + q), json(API + "/weekly-active-villages?" + q),
        json(API + "/monthly-active-villages?" + q), json(API + "/session-duration?metric=avg&" + q),
        json(API + "/session-duration?metric=p50&" + q), json(API + "/session-duration?metric=p95&" + q),
        json(API + "/dialogue-opens?" + q), json(API + "/command-executions?" + q),
        json(API + "/events-by-type?" + q), json(API + "/events/heatmap?" + q),
        json(API + "/daily-active-villages/summary?" + q), json(API + "/dialogue-opens/summary?" + q),
        json(API + "/command-executions/summary?" + q), json(API + "/session-duration/summary?metric=avg&" + q),
        json(API + "/events/summary?" + q),
      ]);
      if (id !== state.loads) return;  // a newer load started meanwhile
      state.pollSeconds = Math.max(listing.cache_seconds || 60, 5);
      const labels = dav.map((r) => r.date);
      const vals = (rows) => rows.map((r) => r.value);
      lineChart("chart-active", labels, [
        { label: "daily", data: vals(dav) }, { label: "WAU (7 d)", data: vals(wau) }, { label: "MAU (30 d)", data: vals(mau) }]);
      lineChart("chart-session", labels, [
        { label: "avg", data: vals(avg) }, { label: "p50", data: vals(p50) }, { label: "p95", data: vals(p95) }]);
      lineChart("chart-dialogue", labels, [{ label: "dialogue opens", data: vals(dia) }], "bar");
      lineChart("chart-command", labels, [{ label: "command executions", data: vals(cmd) }], "bar");
      const names = [...new Set(types.map((r) => r.event_name))].sort();
      lineChart("chart-types", labels, names.map((n) => ({
        label: n, data: labels.map((d) => { const r = types.find((t) => t.date === d && t.event_name === n); return r ? r.value : 0; }) })), "bar");
      heatmap(heat.cells);
      const totals = $("totals");
      totals.replaceChildren(
        card("Distinct active villages", sDav), card("Dialogue opens", sDia), card("Command executions", sCmd),
        card("Avg session (s)", sAvg, (v) => Number(v).toFixed(1)), card("Events", sEv));
      const known = new Set(listing.kpis.map((k) => k.name));
      document.querySelectorAll(".planned").forEach((fig) => {
        fig.querySelector(".not-configured").textContent = known.has(fig.dataset.kpi) ? "configured: reload to chart" : "not configured";
      });
      state.lastError = null;
      if (sEv.total === 0) {
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
  $("save-token").addEventListener("click", () => { localStorage.setItem(TOKEN_KEY, $("token").value.trim()); $("token").value = ""; load(); });
  state.load = load;
  defaultRange();
  if (typeof Chart === "undefined") {
    setStatus("error", "The chart library is not installed on the server (run `npm ci`).");
  } else {
    load();
  }
})();

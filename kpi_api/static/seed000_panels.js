// Seed 000's panels (ANALYTICS_PROFILE=seed000): search usage and installs per server and day.
// Queries are stored only as keyed hashes, so the search panel shows counts, never query text.
(function () {
  "use strict";
  const API = "/internal/analytics/kpis";
  const MAX_DAYS = 31;
  const $ = (id) => document.getElementById(id);
  const fmt = (v) => (v === null || v === undefined ? "suppressed (fewer than k)" : Number(v).toLocaleString());

  function rows(tbody, data, decorate) {
    tbody.replaceChildren(...data.map((cells) => {
      const tr = document.createElement("tr");
      tr.append(...cells.map((t, i) => {
        const td = document.createElement("td");
        td.textContent = t;
        if (decorate) decorate(td, i, cells);
        return td;
      }));
      return tr;
    }));
  }

  async function searchPanel(listing, q, stale, json) {
    const names = new Set(listing.kpis.map((k) => k.name));
    const fig = $("search");
    fig.hidden = !names.has("total-searches");
    if (fig.hidden) return;
    const platform = $("search-platform").value;
    const opt = (name, path) => (names.has(name) ? json(API + "/" + name + path) : Promise.resolve(null));
    const [total, byPlatform, unique, byResults] = await Promise.all([
      json(API + "/total-searches?" + q), opt("total-searches", "?group_by=platform&" + q),
      opt("unique-searches", "?" + q), opt("search-results", "?group_by=results&" + q),
    ]);
    if (stale()) return;
    const platforms = [...new Set((byPlatform || []).map((r) => r.platform))].sort();
    const select = $("search-platform");
    select.replaceChildren(new Option("all platforms", ""), ...platforms.map((p) => new Option(p, p)));
    select.value = platforms.includes(platform) ? platform : "";
    const at = (list, d, pred) => { const r = (list || []).find((x) => x.date === d && pred(x)); return r ? r.value : 0; };
    const searches = (d) => (select.value ? at(byPlatform, d, (r) => r.platform === select.value) : at(total, d, () => true));
    rows(fig.querySelector("#search-table tbody"), total.map((r) => [
      r.date, fmt(searches(r.date)),
      unique ? fmt(at(unique, r.date, () => true)) : "—",
      byResults ? fmt(at(byResults, r.date, (x) => x.results === "0")) : "—"]));
    const sums = platforms.map((p) => [p, (byPlatform || []).filter((r) => r.platform === p).reduce((a, r) => a + (r.value || 0), 0)]);
    rows(fig.querySelector("#search-platforms tbody"), sums.filter(([p]) => !select.value || p === select.value).map(([p, v]) => [p, fmt(v)]));
    fig.querySelector(".note").textContent = select.value
      ? "Searches on " + select.value + "; unique and zero-result searches are counted over all platforms."
      : "Queries are stored hashed: counts only, never the text.";
  }

  async function serverHeatmap(listing, q, stale, json) {
    const top = listing.kpis.find((k) => k.name === "install-count");
    const fig = $("server-heatmap");
    fig.hidden = !top;
    if (!top) return;
    const [start, end] = [new URLSearchParams(q).get("start"), new URLSearchParams(q).get("end")];
    const days = [];
    for (let t = Date.parse(start + "T00:00:00Z"); t <= Date.parse(end + "T00:00:00Z"); t += 86400000) {
      days.push(new Date(t).toISOString().slice(0, 10));
    }
    // one request per day: at most the range's last MAX_DAYS days, so a long range stays under the rate limit
    const shown = days.slice(-MAX_DAYS);
    const [range, ...perDay] = await Promise.all([
      json(API + "/install-count/top?limit=10&start=" + shown[0] + "&end=" + end),
      ...shown.map((d) => json(API + "/install-count/top?limit=1000&start=" + d + "&end=" + d)),
    ]);
    if (stale()) return;
    const servers = range.rows.map((r) => r.key);
    const cell = (i, s) => { const r = perDay[i].rows.find((x) => x.key === s); return r ? r.value : 0; };
    const clipped = days.length > shown.length;
    days.splice(0, days.length, ...shown);
    fig.querySelector("figcaption").textContent = "Installs per server and day (top servers by installs"
      + (clipped ? ", the range's last " + MAX_DAYS + " days)" : ")");
    const grid = servers.map((s) => days.map((_, i) => cell(i, s)));
    const max = Math.max(1, ...grid.flat().map((v) => v || 0));
    const head = fig.querySelector("thead tr");
    head.replaceChildren(...["server", ...days.map((d) => d.slice(5))].map((t) => {
      const th = document.createElement("th"); th.textContent = t; return th;
    }));
    rows(fig.querySelector("tbody"), servers.map((s, j) => [s, ...grid[j].map((v) => (v === null ? "—" : String(v)))]),
      (td, i, cells) => {
        if (i === 0) return;
        td.dataset.date = days[i - 1];
        const v = Number(cells[i]) || 0;  // log scale: a quiet server still shows beside a busy one
        td.style.background = v ? "rgba(37, 99, 235, " + (0.1 + 0.9 * Math.log1p(v) / Math.log1p(max)).toFixed(3) + ")" : "";
      });
    if (!servers.length) rows(fig.querySelector("tbody"), [["no installs in this range"]]);
  }

  window.seed000Panels = {
    render: (listing, q, stale, json) => Promise.all([searchPanel(listing, q, stale, json), serverHeatmap(listing, q, stale, json)]),
  };
})();

// The privacy report page: GET /internal/analytics/privacy-report with the token the dashboard keeps.
(function () {
  "use strict";
  const TOKEN_KEY = "villageAnalyticsToken";  // shared with dashboard.js
  const $ = (id) => document.getElementById(id);
  window.privacy = { report: null };

  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    localStorage.setItem(TOKEN_KEY, hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }

  function setStatus(kind, text) {
    $("status").dataset.state = kind;
    $("status").textContent = text;
    document.body.dataset.state = kind;
  }

  function rows(table, pairs, head) {
    const el = $(table);
    el.replaceChildren();
    if (head) {
      const tr = el.insertRow();
      head.forEach((h) => { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); });
    }
    pairs.forEach((cells) => {
      const tr = el.insertRow();
      cells.forEach((c) => { tr.insertCell().textContent = c === null || c === undefined ? "—" : String(c); });
    });
  }

  function flat(obj, prefix) {
    return Object.entries(obj).flatMap(([k, v]) =>
      v && typeof v === "object" ? flat(v, prefix + k + ".") : [[prefix + k, v]]);
  }

  function render(r) {
    rows("retention", Object.entries(r.retention), ["setting", "value"]);
    rows("salts", r.salt_epochs.map((s) => [s.epoch, s.from_day, s.to_day, s.deleted_on_day]),
      ["epoch", "from", "to", "salt deleted on"]);
    rows("at-rest", flat(r.at_rest, ""), ["place", "count"]);
    rows("opt-outs", Object.entries(r.opt_outs), ["reason", "requests"]);
    rows("request-fields", Object.entries(r.request_fields), ["field", "treatment"]);
    const box = $("events");
    box.replaceChildren();
    Object.entries(r.events).forEach(([name, fields]) => {
      const h = document.createElement("h3");
      h.textContent = name;
      const t = document.createElement("table");
      t.id = "fields-" + name;
      box.append(h, t);
      rows(t.id, Object.entries(fields), ["field", "treatment"]);
    });
  }

  async function load() {
    setStatus("loading", "Loading…");
    try {
      const resp = await fetch("/internal/analytics/privacy-report", {
        headers: { Authorization: "Bearer " + (localStorage.getItem(TOKEN_KEY) || "") },
      });
      const body = await resp.json();
      if (!resp.ok) throw new Error(resp.status + ": " + (body.detail || body.error));
      window.privacy.report = body;
      render(body);
      setStatus("ready", "Profile " + body.profile + ", as of " + new Date().toISOString());
    } catch (err) {
      setStatus("error", String(err.message || err));
    }
  }

  $("save-token").addEventListener("click", () => {
    localStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    load();
  });
  load();
})();

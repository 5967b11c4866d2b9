// The console's page: it fetches from its own origin only, and checks what it shows before calling it verified.
"use strict";
(function () {
  const V = window.CustosVerify, C = window.CustosCharts;
  const dec = new TextDecoder();
  const state = { info: null, verifier: null, keyError: "", page: null };
  const $ = (id) => document.getElementById(id);
  const RELEASES = new Set(["GetCase", "PullCases", "GetPacket", "PullFeed", "OpenContact", "SubjectData"]);

  async function api(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const resp = await fetch(path + (q.toString() ? "?" + q : ""), { credentials: "same-origin" });
    const doc = await resp.json();
    if (!resp.ok) throw Object.assign(new Error(doc.error ? `${doc.error.code}: ${doc.error.message}` : resp.status),
      { code: doc.error && doc.error.code });
    return doc;
  }

  function td(text, cls) {
    const c = document.createElement("td");
    c.textContent = text === undefined || text === null ? "" : String(text);
    if (cls) c.className = cls;
    return c;
  }

  function badge(kind, text) {
    const b = document.createElement("span");
    b.className = "badge " + kind;
    b.textContent = text;
    return b;
  }

  // The checkpoint of an answer, checked against the pinned key; {ok, size, root, reason}.
  async function checkNote(note) {
    if (!note) return { ok: false, unverified: true, reason: "the gateway serves checkpoints and proofs to regulators only" };
    if (!state.verifier) return { ok: false, unverified: true, reason: state.keyError || "no pinned key" };
    try {
      return { ok: true, ...(await V.verifyCheckpoint(note, state.verifier)) };
    } catch (e) {
      return { ok: false, reason: e.message };
    }
  }

  function showCheckpointStatus(cp) {
    const s = $("cp-status");
    if (cp.ok) {
      s.className = "badge verified";
      s.textContent = `checkpoint verified: ${cp.size} events, signed by ${state.verifier.name}`;
    } else {
      s.className = "badge " + (cp.unverified ? "unverified" : "failed");
      s.textContent = (cp.unverified ? "checkpoint UNVERIFIED: " : "checkpoint FAILS verification: ") + cp.reason;
    }
    s.dataset.verify = cp.ok ? "verified" : cp.unverified ? "unverified" : "failed";
  }

  // Rows first, then each proof checked and its row marked: nothing is called verified before it is.
  async function renderEvents(table, doc, columns) {
    const body = table.querySelector("tbody");
    body.textContent = "";
    table.dataset.state = "checking";
    const rows = [];
    for (const ev of doc.events) {
      const leaf = V.b64bytes(ev.leaf);
      let obj = {};
      try { obj = JSON.parse(dec.decode(leaf)); } catch (e) { obj = {}; }
      const tr = document.createElement("tr");
      tr.dataset.seq = ev.seq;
      if (obj.decision === "deny") tr.className = "deny";
      for (const col of columns(obj, ev)) tr.appendChild(col);
      const cell = td("");
      cell.appendChild(badge("unverified", "checking"));
      tr.appendChild(cell);
      body.appendChild(tr);
      rows.push({ tr, cell, leaf, ev, obj });
    }
    const cp = await checkNote(doc.checkpoint);
    showCheckpointStatus(cp);
    let verified = 0, failed = 0;
    for (const r of rows) {
      let kind, text;
      if (!cp.ok || r.ev.unproven) {
        kind = "unverified"; text = r.ev.unproven ? "unverified (no proof served)" : "unverified";
      } else {
        const ok = r.obj.seq === r.ev.seq &&
          await V.verifyInclusion(r.ev.seq, cp.size, r.leaf, r.ev.proof.map(V.b64bytes), cp.root);
        kind = ok ? "verified" : "failed"; text = ok ? "\u2713 verified" : "\u2717 FAILS proof";
        if (ok) verified++; else { failed++; r.tr.classList.add("failed-row"); }
      }
      r.cell.textContent = "";
      r.cell.appendChild(badge(kind, text));
      r.tr.dataset.verify = kind;
    }
    const unproven = rows.some((r) => r.ev.unproven);
    table.dataset.state = failed ? "failed" : cp.ok && !unproven ? "verified" : "unverified";
    return { cp, verified, failed, total: rows.length };
  }

  function timelineColumns(o) {
    return [td(o.seq), td((o.time || "").replace("T", " ").replace("Z", "")), td(o.org), td(o.agent), td(o.method), td(o.purpose),
      td(o.decision), td(o.code || o.rule), td(o.case_id), td(o.borrower_id), td(o.channel),
      td((o.fields || []).join(", "), "fields")];
  }

  function formParams(form) {
    const out = {};
    for (const [k, v] of new FormData(form).entries()) if (String(v).trim()) out[k] = String(v).trim();
    return out;
  }

  async function loadTimeline(params) {
    $("error").hidden = true;
    try {
      const doc = await api("/api/events", params);
      state.page = { doc, params };
      const r = await renderEvents($("timeline"), doc, timelineColumns);
      const first = doc.events.length ? doc.events[0].seq : "-", last = doc.events.length ? doc.events[doc.events.length - 1].seq : "-";
      $("page-info").textContent = `events ${first}\u2013${last}` + (r.cp.ok ? ` of ${r.cp.size}` : "");
      $("timeline-summary").textContent = `${r.total} events shown: ${r.verified} verified, ${r.failed} failing` +
        (r.cp.ok ? "" : ", none can be verified (see the checkpoint status)");
      $("prev").disabled = doc.prev_from_seq === null;
      $("next").disabled = doc.next_from_seq === null;
    } catch (e) {
      $("error").hidden = false;
      $("error").textContent = e.message;
      $("timeline").dataset.state = "error";
    }
  }

  // ---- charts: the gateway's figures (audit stats) when the client has them, else counted from verified events
  async function drawCharts(params) {
    const box = $("charts");
    box.textContent = "";
    let groups = null, source = "";
    if (state.info.stats) {
      try {
        const s = await api("/api/stats", { from: params.since, to: params.until, by: "org,method,purpose,decision,channel,code,day" });
        groups = s.groups;
        const cp = await checkNote(s.checkpoint);
        source = `figures as the gateway counts them (audit stats: ${s.total} events in [${s.from}, ${s.to}) of the ` +
          `tree of ${s.size}; its checkpoint ` + (cp.ok && cp.size === s.size ? "verified by this page"
            : cp.unverified ? "unverified" : "FAILS verification") + "); recount them with custos audit stats --verify";
        box.dataset.source = "stats";
        box.dataset.verify = cp.ok && cp.size === s.size ? "verified" : cp.unverified ? "unverified" : "failed";
      } catch (e) { groups = null; }
    }
    if (groups === null) {
      const doc = await api("/api/events", { org: params.org, since: params.since, until: params.until, from_seq: 0, limit: 1000 });
      const t = document.createElement("table");
      t.appendChild(document.createElement("tbody"));
      const r = await renderEvents(t, doc, () => []);
      groups = doc.events.map((ev) => {
        const o = JSON.parse(dec.decode(V.b64bytes(ev.leaf)));
        return { org: o.org, method: o.method, purpose: o.purpose, decision: o.decision, channel: o.channel || "", code: o.code,
          day: (o.time || "").slice(0, 10), released: (o.fields || []).length > 0, count: 1 };
      });
      box.dataset.source = "events";
      source = `counted in the browser from the ${r.total} events fetched for this filter (${r.verified} verified, ` +
        `${r.failed} failing)` + (doc.next_from_seq !== null ? "; more events match: narrow the range" : "");
    }
    if (params.org) groups = groups.filter((g) => g.org === undefined || g.org === params.org);
    $("chart-source").textContent = source;
    const sum = (pred, key) => {
      const m = new Map();
      for (const g of groups) if (pred(g)) m.set(g[key], (m.get(g[key]) || 0) + g.count);
      return Array.from(m.entries()).sort((a, b) => b[1] - a[1]);
    };
    // A release: an allowed call that hands case data to someone (and, where the page sees fields, released some).
    box.appendChild(C.bars("Releases by purpose", sum((g) => g.decision === "allow" && RELEASES.has(g.method) &&
      g.released !== false, "purpose")));
    // A contact: an opened one (its outcome carries the channel too, and is not a second contact).
    box.appendChild(C.bars("Contacts by channel", sum((g) => !!g.channel && g.method === "OpenContact" &&
      g.decision === "allow", "channel")));
    box.appendChild(C.bars("Refusals by code", sum((g) => g.decision === "deny", "code"), "deny"));
    box.appendChild(C.bars("Events per day", sum(() => true, "day").sort((a, b) => (a[0] < b[0] ? -1 : 1))));
    box.dataset.state = "drawn";
  }

  async function loadHistory(params) {
    const table = $("history");
    try {
      let doc;
      if (params.case) doc = await api("/api/events", { case: params.case, from_seq: 0, limit: 1000 });
      else doc = await api("/api/history", { borrower: params.borrower, lender: params.lender });
      const r = await renderEvents(table, doc, (o, ev) => [td(o.seq), td((o.time || "").replace("T", " ").replace("Z", "")),
        td(o.org), td(o.method), td(o.purpose), td(o.decision), td(o.code || o.rule), td(o.case_id),
        td(ev.report_lender || o.lender || ""), td((o.fields || []).join(", "), "fields")]);
      $("history-summary").textContent = `${r.total} events: ${r.verified} verified, ${r.failed} failing`;
    } catch (e) {
      $("history-summary").textContent = e.message;
      table.dataset.state = "error";
    }
  }

  async function loadCheckpoint() {
    const doc = await api("/api/checkpoint");
    const cp = await checkNote(doc.checkpoint);
    showCheckpointStatus(cp);
    const dl = $("cp-fields");
    dl.textContent = "";
    const add = (k, v) => { const dt = document.createElement("dt"); dt.textContent = k; const dd = document.createElement("dd");
      dd.textContent = v; dl.append(dt, dd); };
    const lines = doc.checkpoint.split("\n");
    add("origin", lines[0]); add("size", lines[1]); add("root", lines[2]);
    add("pinned key", state.info.vkey ? `${state.info.key_source}` : "none");
    add("state", cp.ok ? "verified by this page" : (cp.unverified ? "UNVERIFIED: " : "FAILS: ") + cp.reason);
    $("cp-note").textContent = doc.checkpoint;
    $("view-checkpoint").dataset.verify = cp.ok ? "verified" : cp.unverified ? "unverified" : "failed";
    const ul = $("cosigned");
    ul.textContent = "";
    if (!doc.cosigned.length) { const li = document.createElement("li"); li.textContent = "no cosignatures yet"; ul.appendChild(li); }
    for (const note of doc.cosigned) {
      const li = document.createElement("li");
      const c = await checkNote(note);  // the cosigner's line names another key: only the log's is checked
      li.appendChild(badge(c.ok ? "verified" : c.unverified ? "unverified" : "failed",
        c.ok ? `log signature verified (size ${c.size})` : "log signature " + (c.unverified ? "unverified" : "FAILS")));
      const pre = document.createElement("pre");
      pre.textContent = note;
      li.appendChild(pre);
      ul.appendChild(li);
    }
  }

  function show(view) {
    for (const b of document.querySelectorAll(".tab")) b.classList.toggle("on", b.dataset.view === view);
    for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== "view-" + view;
    if (view === "checkpoint") loadCheckpoint().catch((e) => { $("cp-note").textContent = e.message; });
    if (view === "charts" && !$("charts").dataset.state) drawCharts(formParams($("chart-form"))).catch((e) => {
      $("chart-source").textContent = e.message; });
  }

  async function main() {
    state.info = await api("/api/info");
    $("who").textContent = `${state.info.identity} @ ${state.info.gateway}`;
    if (state.info.vkey) {
      try { state.verifier = await V.parseVerifierKey(state.info.vkey); }
      catch (e) { state.keyError = "the pinned key is unusable: " + e.message; }
    } else {
      state.keyError = "no pinned key (start the console with --key audit.vkey)";
    }
    $("key-status").textContent = state.verifier ? `pinned key ${state.verifier.name} (${state.info.key_source})` : state.keyError;
    for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => show(b.dataset.view));
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadTimeline(formParams($("filters"))); });
    $("clear").addEventListener("click", () => { $("filters").reset(); loadTimeline({}); });
    $("prev").addEventListener("click", () => loadTimeline({ ...state.page.params, from_seq: state.page.doc.prev_from_seq }));
    $("next").addEventListener("click", () => loadTimeline({ ...state.page.params, from_seq: state.page.doc.next_from_seq }));
    $("chart-form").addEventListener("submit", (e) => { e.preventDefault(); drawCharts(formParams($("chart-form"))); });
    $("history-form").addEventListener("submit", (e) => { e.preventDefault(); loadHistory(formParams($("history-form"))); });
    await loadTimeline({});
  }

  document.addEventListener("DOMContentLoaded", () => { main().catch((e) => {
    $("error").hidden = false; $("error").textContent = e.message; }); });
})();

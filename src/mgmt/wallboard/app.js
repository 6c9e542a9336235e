// The wallboard: snapshots from the REST API, kept live by the event
// stream (each event asks for fresh snapshots), with polling whenever the
// stream is not open. No library, no network access but this engine.
"use strict";
(function () {
  const KEY = "cc-engine-token";
  const POLL_MS = 2000;          // without the event stream
  const LIVE_REFRESH_MS = 5000;  // with it: waits grow between events
  const CHART_SPAN_MS = 10 * 60 * 1000;
  // The stream's `event:` names (README "Live events"); any of them only
  // asks for fresh snapshots.
  const EVENT_TYPES = [
    "agent-status", "call-queued", "call-offered", "call-answered", "call-ended",
    "call-abandoned", "call-overflowed", "offer-failed", "queue-counters", "reload", "gap",
  ];

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(KEY);
  let admin = false;
  let source = null;
  let timer = null;
  let pending = null;
  let busy = false;
  let mode = "off";
  const history = new Map();   // queue name -> [{t, wait}]
  let agentTimes = new Map();  // agent id -> {base, at}
  let editing = null;          // agent whose pause reason is being typed
  let lastAgents = [];

  function api(path, opts) {
    const o = Object.assign({ headers: {} }, opts || {});
    o.headers.Authorization = "Bearer " + token;
    return fetch(path, o).then((r) => {
      if (r.status === 401) { forget("The token was refused."); throw new Error("401"); }
      return r.json().then((j) => ({ status: r.status, body: j }), () => ({ status: r.status, body: {} }));
    });
  }

  function setMode(m) {
    mode = m;
    const el = $("live");
    el.className = "live " + m;
    el.textContent = m === "on" ? "live" : m === "poll" ? "polling" : "offline";
    schedule(m === "on" ? LIVE_REFRESH_MS : POLL_MS);
  }

  function schedule(ms) {
    if (timer) clearInterval(timer);
    timer = setInterval(refresh, ms);
  }

  // Events only say that something changed; bursts are folded into one
  // refresh.
  function soon() {
    if (pending) return;
    pending = setTimeout(() => { pending = null; refresh(); }, 150);
  }

  function openStream() {
    if (!window.EventSource) { setMode("poll"); return; }
    try {
      source = new EventSource("/v1/events?token=" + encodeURIComponent(token));
    } catch (e) { setMode("poll"); return; }
    source.onopen = () => setMode("on");
    source.onmessage = soon;
    for (const t of EVENT_TYPES) source.addEventListener(t, soon);
    source.onerror = () => {
      // CONNECTING: the browser retries by itself; poll meanwhile.
      // CLOSED (no such route, refused): poll for good.
      if (mode !== "poll") setMode("poll");
    };
  }

  function refresh() {
    if (!token || busy) return;
    busy = true;
    Promise.all([api("/v1/queues"), api("/v1/agents")])
      .then(([q, a]) => {
        $("error").textContent = "";
        if (q.status === 200) drawQueues(q.body.queues || []);
        if (a.status === 200) drawAgents(a.body.agents || []);
      })
      .catch((e) => { if (e.message !== "401") $("error").textContent = "Cannot reach the engine: " + e.message; })
      .finally(() => { busy = false; });
  }

  function fmtDur(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
    return h > 0 ? h + ":" + mm + ":" + ss : m + ":" + ss;
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function drawQueues(queues) {
    const now = Date.now();
    const body = $("queues").tBodies[0];
    body.textContent = "";
    for (const q of queues) {
      const h = history.get(q.name) || [];
      h.push({ t: now, wait: q.longest_wait_ms || 0 });
      while (h.length && h[0].t < now - CHART_SPAN_MS) h.shift();
      history.set(q.name, h);
      const tr = document.createElement("tr");
      tr.dataset.queue = q.name;
      cell(tr, q.name);
      cell(tr, String(q.waiting), "num waiting");
      cell(tr, fmtDur(q.longest_wait_ms || 0), "num longest");
      const t = q.today || {};
      const sl = t.answered > 0 ? (100 * t.answered_in_sl) / t.answered : null;
      cell(tr, sl === null ? "–" : sl.toFixed(0) + " % within " + q.service_level_s + " s",
        "num sl " + (sl === null ? "" : sl >= 80 ? "sl-good" : sl >= 60 ? "sl-mid" : "sl-bad"));
      cell(tr, (t.answered || 0) + " / " + (t.offered || 0), "num");
      const td = cell(tr, "");
      const c = document.createElement("canvas");
      c.className = "chart";
      c.width = 240; c.height = 48;
      td.appendChild(c);
      body.appendChild(tr);
      chart(c, h, now);
    }
  }

  // Longest wait over the last ten minutes, scaled to its own maximum.
  function chart(c, h, now) {
    const g = c.getContext("2d");
    if (!g) return;
    const W = c.width, H = c.height;
    g.clearRect(0, 0, W, H);
    g.strokeStyle = "#2a3441";
    g.beginPath(); g.moveTo(0, H - 0.5); g.lineTo(W, H - 0.5); g.stroke();
    const max = Math.max(10000, ...h.map((p) => p.wait));
    const x = (t) => W - ((now - t) / CHART_SPAN_MS) * W;
    const y = (w) => H - 2 - (w / max) * (H - 12);
    g.strokeStyle = "#58a6ff";
    g.lineWidth = 1.5;
    g.beginPath();
    h.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.wait)) : g.moveTo(x(p.t), y(p.wait))));
    g.stroke();
    g.fillStyle = "#8b97a5";
    g.font = "10px system-ui, sans-serif";
    g.fillText(fmtDur(max), 2, 10);
  }

  function drawAgents(agents) {
    lastAgents = agents;
    const at = performance.now();
    const next = new Map();
    const body = $("agents").tBodies[0];
    // A refresh must not lose a pause reason being typed.
    const typing = body.querySelector(".pause-reason");
    const typed = typing ? typing.value : "";
    body.textContent = "";
    for (const a of agents) {
      next.set(a.id, { base: a.time_in_status_ms || 0, at });
      const tr = document.createElement("tr");
      tr.dataset.agent = a.id;
      cell(tr, a.id, "id");
      const st = cell(tr, "");
      const span = document.createElement("span");
      span.className = "status status-" + a.status;
      span.textContent = a.status;
      st.appendChild(span);
      st.className = "status-cell";
      cell(tr, a.paused_reason || "", "reason");
      cell(tr, fmtDur(a.time_in_status_ms || 0), "num since");
      cell(tr, String((a.counters && a.counters.answered) || a.answered || 0), "num");
      const act = cell(tr, "", "admin-only");
      if (admin) actions(act, a);
      body.appendChild(tr);
    }
    agentTimes = next;
    const again = body.querySelector(".pause-reason");
    if (again) again.value = typed;
  }

  function button(parent, text, cls, fn) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.className = cls;
    b.addEventListener("click", fn);
    parent.appendChild(b);
    return b;
  }

  function actions(td, a) {
    const paused = a.status === "paused" || a.paused_reason != null;
    if (paused) {
      button(td, "Unpause", "unpause", () => act(a.id, "unpause", null));
      return;
    }
    if (editing === a.id) {
      const f = document.createElement("span");
      f.className = "pause-form";
      const input = document.createElement("input");
      input.className = "pause-reason";
      input.placeholder = "reason";
      input.maxLength = 200;
      f.appendChild(input);
      button(f, "OK", "pause-ok", () => { editing = null; act(a.id, "pause", input.value.trim()); });
      button(f, "Cancel", "pause-cancel", () => { editing = null; refresh(); });
      input.addEventListener("keydown", (e) => { if (e.key === "Enter") { editing = null; act(a.id, "pause", input.value.trim()); } });
      td.appendChild(f);
      setTimeout(() => input.focus(), 0);
      return;
    }
    button(td, "Pause", "pause", () => { editing = a.id; drawAgentsAgain(); });
  }

  // Redraws only the action cells, so a half-typed reason survives while
  // the other rows stay as they were.
  function drawAgentsAgain() {
    for (const tr of $("agents").tBodies[0].rows) {
      const a = lastAgents.find((x) => x.id === tr.dataset.agent);
      const td = tr.cells[tr.cells.length - 1];
      if (!a || !td) continue;
      td.textContent = "";
      actions(td, a);
    }
  }

  function act(id, what, reason) {
    const opts = { method: "POST" };
    if (what === "pause") {
      opts.headers = { "Content-Type": "application/json" };
      opts.body = JSON.stringify(reason ? { reason } : {});
    }
    api("/v1/agents/" + encodeURIComponent(id) + "/" + what, opts)
      .then((r) => {
        if (r.status >= 300) $("error").textContent = what + " " + id + ": " + ((r.body && r.body.error) || r.status);
        refresh();
      })
      .catch(() => {});
  }

  // Time in status runs on between snapshots.
  setInterval(() => {
    const now = performance.now();
    for (const tr of $("agents").tBodies[0].rows) {
      const t = agentTimes.get(tr.dataset.agent);
      const c = tr.querySelector(".since");
      if (t && c) c.textContent = fmtDur(t.base + (now - t.at));
    }
  }, 1000);

  function forget(why) {
    token = null;
    sessionStorage.removeItem(KEY);
    if (source) { source.close(); source = null; }
    if (timer) { clearInterval(timer); timer = null; }
    $("board").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = why || "";
    $("role").textContent = "";
    setModeLabelOnly("off");
  }

  function setModeLabelOnly(m) {
    mode = m;
    $("live").className = "live " + m;
    $("live").textContent = "offline";
  }

  function start() {
    api("/v1/whoami").then((r) => {
      if (r.status !== 200) { forget("The engine answered " + r.status + "."); return; }
      admin = r.body.role === "admin";
      document.body.classList.toggle("admin", admin);
      $("role").textContent = r.body.role;
      $("login").hidden = true;
      $("board").hidden = false;
      $("logout").hidden = false;
      setMode("poll");
      refresh();
      openStream();
    }).catch((e) => { if (e.message !== "401") $("login-error").textContent = "Cannot reach the engine: " + e.message; });
  }

  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    if (!token) return;
    sessionStorage.setItem(KEY, token);
    start();
  });
  $("logout").addEventListener("click", () => forget(""));
  if (token) start();
})();

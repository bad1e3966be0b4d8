// Dashboard: polls /api/status every 2 s and redraws tiles and phase bars; plots /api/history.
(function () {
  "use strict";
  var POLL_MS = 2000, PLOT_MS = 15000;
  var STATES = {
    offline: _("offline"), available: _("available"), car_connected: _("car connected"),
    charging: _("charging"), paused: _("paused"), error: _("error"), disabled: _("disabled"),
    not_running: _("not running")
  };
  var PHASE_COLORS = ["#d35400", "#2c3e50", "#7f8c8d"];
  var hours = 3, lastStatus = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function _(m, params) {   // the page's language (i18n.js); %(name)s filled from params
    var t = (window.I18N && window.I18N[m]) || m;
    return t.replace(/%\((\w+)\)[sd]/g, function (all, k) { return params && k in params ? params[k] : all; });
  }
  var COMMA = window.LANG === "de";
  function num(text) { return COMMA ? text.replace(".", ",") : text; }
  function fmt(v, digits, unit) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    return num(Number(v).toFixed(digits)) + (unit ? " " + unit : "");
  }
  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json", "X-Requested-With": "fetch"}}).then(function (r) {
      if (r.status === 401) { window.location = "/login?next=/"; throw new Error("login"); }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function tile(d) {
    var state = d.active === false ? "disabled" : d.state;
    var t = el("article", "tile st-" + state);
    t.dataset.name = d.name;
    var head = el("header");
    var h = el("h3"), link = el("a", null, d.name);
    link.href = "/devices/" + encodeURIComponent(d.name);
    h.appendChild(link);
    head.appendChild(h);
    head.appendChild(el("span", "badge st-" + state, STATES[state] || state));
    t.appendChild(head);
    var sub = [d.label, d.address].filter(Boolean).join(" · ");
    if (sub) t.appendChild(el("p", "muted small", sub));
    var dl = el("dl");
    function row(k, v) { dl.appendChild(el("dt", null, k)); dl.appendChild(el("dd", null, v)); }
    var evse = d.type === "ocpp16" || d.type === "powerbrain";
    if (evse) row(_("Given / max"), (d.limit_a === null || d.limit_a === undefined ? "–" : fmt(d.limit_a, 1)) +
                  " / " + fmt(d.max_current, 0, "A"));
    row(evse ? _("Drawn") : _("Currents"), (d.currents_a || []).map(function (c) { return fmt(c, 1); }).join(" / ") + " A");
    row(_("Power"), fmt(d.power_w === null || d.power_w === undefined ? null : d.power_w / 1000, 2, "kW"));
    if (evse) row(_("Session"), fmt(d.energy_wh === null || d.energy_wh === undefined ? null : d.energy_wh / 1000, 2, "kWh"));
    if (d.id_tag) row(_("idTag"), d.id_tag);
    if (d.gateway) row(_("Backend"), d.gateway.state + (d.gateway.queued ? " · " + d.gateway.queued + " " + _("queued") : "") +
                       (d.gateway.last_error ? " · " + d.gateway.last_error : ""));
    t.appendChild(dl);
    if (d.removed) t.appendChild(el("p", "error small", _("Removed from the configuration: still counted until its car stops or it disconnects.")));
    var note = d.why !== undefined ? d.why : d.error || d.reason;   // why: the reason in operator words
    var serious = state === "error" || state === "offline" || state === "not_running";
    if (note) t.appendChild(el("p", "why " + (serious ? "error small" : "muted small"), note));
    if (evse && d.state !== "not_running" && d.state !== "disabled" && d.active !== false) t.appendChild(actions(d));
    return t;
  }

  // --- per-box actions (charge now, pause/resume, stop, unlock): POST /api/devices/NAME/action ---------
  var chosen = {};     // the "charge now" duration per box survives the redraw every 2 s
  var TOKEN = (document.querySelector("meta[name=csrf-token]") || {}).content;
  function act(name, action, extra) {
    var body = Object.assign({action: action}, extra || {});
    return fetch("/api/devices/" + encodeURIComponent(name) + "/action", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": TOKEN, "X-Requested-With": "fetch"},
      body: JSON.stringify(body)}).then(function (r) {
      return r.json().then(function (j) { return {ok: r.ok, text: j.message || j.error || ("HTTP " + r.status)}; });
    }).catch(function () { return {ok: false, text: _("No answer from the appliance – retrying…")}; }).then(function (res) {
      var box = document.getElementById("action-result");
      box.textContent = res.text;
      box.className = "flash " + (res.ok ? "ok" : "error");
      getJSON("/api/status").then(render).catch(function () {});
    });
  }
  function button(label, cls, onclick) {
    var b = el("button", "small-btn " + (cls || ""), label);
    b.type = "button";
    b.addEventListener("click", onclick);
    return b;
  }
  function actions(d) {
    var bar = el("div", "tile-actions"), kind = d.override && d.override.kind;
    if (kind === "pause" || kind === "stop") {
      bar.appendChild(button(_("Resume"), "", function () { act(d.name, "resume"); }));
    } else {
      var sel = el("select", "boost-for");
      sel.setAttribute("aria-label", _("how long"));
      [["", _("until unplugged")], ["30", _("30 min")], ["60", _("1 h")], ["120", _("2 h")], ["240", _("4 h")]].forEach(function (o) {
        var opt = el("option", null, o[1]); opt.value = o[0]; sel.appendChild(opt);
      });
      sel.value = chosen[d.name] || "";
      sel.addEventListener("change", function () { chosen[d.name] = sel.value; });
      if (kind === "charge_now") bar.appendChild(button(_("Normal"), "secondary", function () { act(d.name, "resume"); }));
      else bar.appendChild(button(_("Charge now"), "", function () { act(d.name, "charge_now", {minutes: sel.value || null}); }));
      if (kind !== "charge_now") bar.appendChild(sel);
      bar.appendChild(button(_("Pause"), "secondary", function () { act(d.name, "pause"); }));
    }
    if (d.transaction !== null && d.transaction !== undefined) {
      bar.appendChild(button(_("Stop session"), "danger", function () {
        if (window.confirm(_("Stop the charging session at %(name)s?", {name: d.name}))) act(d.name, "stop");
      }));
    }
    if (d.type === "ocpp16") {
      bar.appendChild(button(_("Unlock"), "secondary", function () {
        if (window.confirm(_("Unlock the connector of %(name)s?", {name: d.name}))) act(d.name, "unlock");
      }));
    }
    return bar;
  }

  function render(st) {
    lastStatus = st;
    document.getElementById("stale").classList.add("hidden");
    var lm = st.load_management || {};
    document.getElementById("s-mode").textContent = st.mode;
    document.getElementById("s-limit").textContent = fmt(st.limit_a, 1, "A");
    document.getElementById("s-charging").textContent = (st.totals && st.totals.charging) || 0;
    document.getElementById("s-power").textContent = fmt(((st.totals && st.totals.power_w) || 0) / 1000, 2, "kW");
    document.getElementById("s-cycle").textContent = lm.cycle_s !== undefined ? fmt(lm.cycle_s, 1, "s") : "–";
    var over = lm.overdraft_a ? Math.max.apply(null, lm.overdraft_a) : null;
    var od = document.getElementById("s-overdraft");
    od.textContent = over === null ? "–" : fmt(over, 1, "A");
    od.classList.toggle("error", over > 0);   // should stay 0: shown red when the fuse was overdrawn

    var load = lm.load_a || (st.totals && st.totals.currents_a) || [0, 0, 0];
    var limit = st.limit_a || 0;
    var budget = lm.budget_a;
    document.getElementById("load-source").textContent = (lm.load_a
      ? _("House and cars, from load management") + (budget ? "; " + _("available for charging %(a)s A", {a: budget.map(function (b) { return fmt(b, 1); }).join(" / ")}) : "")
      : _("Sum of the wallboxes' currents (load management has not reported yet)")) +
      (st.reserve_a ? "; " + _("reserve %(a)s", {a: fmt(st.reserve_a, 1, "A")}) : "");
    var gl = lm.grid_limit || {};
    var glLine = document.getElementById("grid-limit");
    glLine.textContent = gl.active ? _("Grid operator limit (§14a EnWG) on since %(t)s: all wallboxes together at most %(kw)s kW",
      {t: gl.since, kw: fmt(gl.limit_kw, 1)}) : "";
    glLine.classList.toggle("hidden", !gl.active);
    document.querySelectorAll("#phases .phase").forEach(function (p) {
      var i = Number(p.dataset.phase), v = load[i] || 0;
      var scale = Math.max(limit, v) * 1.1 || 1;
      var fill = p.querySelector(".fill");
      fill.style.width = Math.min(100, 100 * v / scale) + "%";
      fill.classList.toggle("over", limit > 0 && v > limit);
      p.querySelector(".mark").style.left = (100 * limit / scale) + "%";
      p.querySelector(".pval").textContent = fmt(v, 1) + " / " + fmt(limit, 0) + " A";
    });

    var tiles = document.getElementById("tiles");
    var seen = {};
    var running = {};
    (st.devices || []).forEach(function (d) { running[d.name] = d; });
    // tiles in the configuration's order, the same on every refresh; not running ones in their place
    var list = (st.configured || []).map(function (c) {
      seen[c.name] = true;
      var d = running[c.name];
      return d ? Object.assign({label: c.label, address: c.address, max_current: c.max_current}, d)
        : Object.assign({currents_a: [0, 0, 0]}, c);
    });
    Object.keys(running).sort().forEach(function (n) { if (!seen[n]) list.push(running[n]); });
    var frag = document.createDocumentFragment();
    list.forEach(function (d) { frag.appendChild(tile(d)); });
    tiles.replaceChildren(frag);
    if (!list.length) {
      var p = el("p", "muted", _("No devices yet.") + " ");
      var a = el("a", null, _("Add one")); a.href = "/devices/"; p.appendChild(a); tiles.appendChild(p);
    }
    safetyAlerts(lm);
    var un = st.unconfigured || [], box = document.getElementById("unconfigured");
    box.classList.toggle("hidden", !un.length);
    if (un.length) {
      // each with its state in words ("unmanaged, held at 0 A", from the appliance)
      var ids = {n: un.length, ids: un.map(function (u) { return u.charge_box_id + ": " + u.state; }).join("; ")};
      box.replaceChildren(document.createTextNode(un.length > 1 ? _("%(n)s unknown OCPP wallboxes connected (%(ids)s): ", ids)
        : _("%(n)s unknown OCPP wallbox connected (%(ids)s): ", ids)));
      var link = el("a", null, _("adopt on the Devices page")); link.href = "/devices/"; box.appendChild(link);
    }
  }

  // What keeps the cars from their current, in words: a stopped control loop, meters in fault.
  function safetyAlerts(lm) {
    var lines = [];
    if (lm.stopped) lines.push(_("Load management stopped: %(why)s", {why: lm.stopped}));
    Object.keys(lm.meter_faults || {}).sort().forEach(function (name) {
      lines.push(name + ": " + lm.meter_faults[name]);
    });
    var box = document.getElementById("safety");
    box.classList.toggle("hidden", !lines.length);
    box.replaceChildren.apply(box, lines.map(function (t) { return el("p", null, t); }));
  }

  function poll() {
    getJSON("/api/status").then(render).catch(function (e) {
      if (e.message !== "login") document.getElementById("stale").classList.remove("hidden");
    }).then(function () { setTimeout(poll, POLL_MS); });
  }

  // --- plot -----------------------------------------------------------------------------------
  var SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function allocTotal(a) {   // allocations: {name: A} or {name: {current: A, phases: n}}
    var s = 0;
    Object.keys(a || {}).forEach(function (k) {
      var v = a[k];
      if (typeof v === "number") s += v;
      else if (v && typeof v === "object") s += Number(v.current_a !== undefined ? v.current_a : v.current) || 0;
    });
    return s;
  }
  function niceStep(raw) {   // 1, 2, 2.5 or 5 times a power of ten
    var p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return p * (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10);
  }
  function drawPlot(data) {
    lastPlot = data;
    var plot = document.getElementById("plot");
    // draw in the element's own pixels, so text and lines are not stretched on a narrow screen
    var W = Math.max(200, Math.round(plot.clientWidth || 800)), H = 260, L = 34, R = 8, T = 10, B = 24;
    plot.setAttribute("viewBox", "0 0 " + W + " " + H);
    var now = data.now, t0 = now - hours * 3600, pts = data.points || [];
    var limit = (lastStatus && lastStatus.limit_a) || 0;
    var ymax = limit;
    pts.forEach(function (p) {
      (p.load_a || []).concat(p.budget_a || []).forEach(function (v) { ymax = Math.max(ymax, v || 0); });
      ymax = Math.max(ymax, allocTotal(p.allocations));
    });
    var step = niceStep((ymax || 10) * 1.05 / 4);
    ymax = step * 4;
    var x = function (t) { return L + (W - L - R) * (t - t0) / (now - t0); };
    var y = function (v) { return T + (H - T - B) * (1 - v / ymax); };
    var kids = [];
    for (var g = 0; g <= 4; g++) {
      var v = ymax * g / 4;
      kids.push(svg("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), "class": "grid"}));
      var lbl = svg("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end", "class": "axis"}); lbl.textContent = num(String(Math.round(v * 10) / 10));
      kids.push(lbl);
    }
    var every = W < 500 && hours > 3 ? 2 : 1;
    for (var h = 0; h <= hours; h += every) {
      var tl = svg("text", {x: x(now - h * 3600), y: H - 6, "class": "axis",
        "text-anchor": h === hours ? "start" : h === 0 ? "end" : "middle"});
      tl.textContent = h ? "-" + h + " h" : _("now");
      kids.push(tl);
    }
    if (limit) kids.push(svg("line", {x1: L, x2: W - R, y1: y(limit), y2: y(limit), "class": "limit"}));
    function line(get, cls, color) {
      var d = "";
      pts.forEach(function (p) {
        var v = get(p);
        if (v === null || v === undefined || isNaN(v)) return;
        d += (d ? "L" : "M") + x(p.ts).toFixed(1) + "," + y(v).toFixed(1);
      });
      if (d) kids.push(svg("path", {d: d, "class": cls, stroke: color}));
    }
    line(function (p) { return allocTotal(p.allocations); }, "alloc", "#27ae60");
    [0, 1, 2].forEach(function (i) {
      line(function (p) { return p.budget_a ? p.budget_a[i] : null; }, "budget", PHASE_COLORS[i]);
      line(function (p) { return p.load_a ? p.load_a[i] : null; }, "load", PHASE_COLORS[i]);
    });
    if (!pts.length) {
      var nt = svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", "class": "axis"});
      nt.textContent = _("no load-management data yet");
      kids.push(nt);
    }
    plot.replaceChildren.apply(plot, kids);
  }
  function legend() {
    var lg = document.getElementById("legend");
    var items = [[_("L1 load"), PHASE_COLORS[0], "load"], [_("L2 load"), PHASE_COLORS[1], "load"], [_("L3 load"), PHASE_COLORS[2], "load"],
                 [_("budget (dashed)"), "#888", "budget"], [_("allocated to cars"), "#27ae60", "alloc"], [_("limit"), "#c0392b", "limit"]];
    items.forEach(function (it) {
      var s = el("span", "key " + it[2]); var sw = el("i"); sw.style.borderColor = it[1];
      s.appendChild(sw); s.appendChild(document.createTextNode(it[0])); lg.appendChild(s);
    });
  }
  var lastPlot = null;
  window.addEventListener("resize", function () { if (lastPlot) drawPlot(lastPlot); });
  function plotLoop() {
    getJSON("/api/history?hours=" + hours).then(drawPlot).catch(function () {})
      .then(function () { setTimeout(plotLoop, PLOT_MS); });
  }
  document.querySelectorAll(".plot-tools button").forEach(function (b) {
    b.addEventListener("click", function () {
      hours = Number(b.dataset.hours);
      document.querySelectorAll(".plot-tools button").forEach(function (o) { o.classList.toggle("on", o === b); });
      getJSON("/api/history?hours=" + hours).then(drawPlot).catch(function () {});
    });
  });
  legend();
  poll();
  plotLoop();
})();

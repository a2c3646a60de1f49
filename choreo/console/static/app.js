// The Choreo console's page: hash routes over the JSON API of choreo.console.app.
// Everything the mesh wrote (inputs, model output, tool results, dead-letter bytes) is put into
// the page as text nodes, never as markup, with control characters shown as escapes: no HTML,
// no script, no terminal codes. No innerHTML anywhere in this file.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const main = document.getElementById("main");
let editing = false; // a person is typing: live updates wait
let rendering = 0;
const FIRST_ROWS = 100; // steps drawn before a trace page is shown
const SLICE_ROWS = 200; // steps drawn at a time after that

// -- building the page -----------------------------------------------------------------------

function clean(value) {
  // control characters (ANSI escapes among them) become visible \uXXXX escapes
  return String(value ?? "").replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value") el.value = value;
    else el.setAttribute(name, String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(clean(child)));
  }
}

function status(value) {
  return h("span", { class: "status " + clean(value) }, value);
}

function link(text, hash) {
  return h("a", { href: "#" + hash }, text);
}

function ms(value) {
  return value >= 1000 ? (value / 1000).toFixed(2) + " s" : Math.round(value) + " ms";
}

function dollars(value) {
  return "$" + Number(value || 0).toFixed(6);
}

function age(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return Math.round(seconds) + " s";
  if (seconds < 3600) return Math.round(seconds / 60) + " min";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}

// -- talking to the server -------------------------------------------------------------------

async function api(path, body) {
  const options = { headers: { Authorization: "Bearer " + TOKEN } };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function route() {
  const [path, query] = (location.hash.slice(1) || "/traces").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query || "") };
}

function go(path, query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v !== "" && v != null) q.set(k, v);
  const text = q.toString();
  location.hash = "#" + path + (text ? "?" + text : "");
}

async function render() {
  const ticket = ++rendering;
  const { parts, query } = route();
  const page = parts[0] || "traces";
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("current", a.dataset.page === page || (page === "trace" && a.dataset.page === "traces"));
  }
  let view;
  try {
    if (page === "trace" && parts[2] === "state") view = await statePage(parts[1], query);
    else if (page === "trace" && parts[2] === "budget") view = await budgetPage(parts[1]);
    else if (page === "trace") view = await tracePage(parts[1]);
    else if (page === "escalations") view = await escalationsPage();
    else if (page === "dlq") view = await dlqPage();
    else if (page === "mesh") view = await meshPage();
    else view = await tracesPage(query);
  } catch (error) {
    view = h("div", { class: "error", "data-testid": "error" }, error.message);
  }
  if (ticket !== rendering) return; // a newer render started meanwhile
  main.replaceChildren(view);
  main.dataset.page = page;
  main.dataset.rendered = String(ticket);
}

// -- traces ----------------------------------------------------------------------------------

async function tracesPage(query) {
  const offset = Number(query.get("offset") || 0);
  const filters = { status: query.get("status") || "", agent: query.get("agent") || "", text: query.get("text") || "" };
  const q = new URLSearchParams({ ...filters, offset, limit: 50 });
  const page = await api("/api/traces?" + q);
  const change = (name) => (event) => go("/traces", { ...filters, [name]: event.target.value });
  let typing;
  const form = h("div", { class: "filters" },
    h("label", {}, "status ",
      h("select", { "data-testid": "filter-status", onchange: change("status") },
        ["", "running", "completed", "failed", "halted"].map((v) =>
          h("option", { value: v, selected: v === filters.status }, v || "any")))),
    h("label", {}, "agent ",
      h("select", { "data-testid": "filter-agent", onchange: change("agent") },
        ["", ...page.agents].map((v) => h("option", { value: v, selected: v === filters.agent }, v || "any")))),
    h("label", {}, "text ",
      h("input", { type: "search", value: filters.text, "data-testid": "filter-text",
        oninput: (event) => { clearTimeout(typing); typing = setTimeout(() => change("text")(event), 300); } })));
  const rows = page.traces.map((t) => h("tr", { class: "status-" + clean(t.status), "data-trace": t.trace_id },
    h("td", {}, link(t.trace_id, "/trace/" + encodeURIComponent(t.trace_id))),
    h("td", {}, status(t.status)),
    h("td", { class: "num" }, age(t.admitted_at)),
    h("td", { class: "num" }, t.hops),
    h("td", { class: "num" }, t.tokens),
    h("td", { class: "num" }, dollars(t.cost)),
    h("td", {}, t.last_agent || ""),
    h("td", {}, t.reason || "")));
  const shown = page.traces.length ? `${offset + 1}–${offset + page.traces.length} of ${page.total}` : `none of ${page.total}`;
  return h("section", { "data-testid": "traces" },
    h("h1", {}, "Traces"), form,
    h("table", {},
      h("thead", {}, h("tr", {}, ["trace", "status", "age", "steps", "tokens", "cost", "last agent", "reason"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows)),
    h("div", { class: "pager" },
      h("button", { disabled: offset === 0, onclick: () => go("/traces", { ...filters, offset: Math.max(0, offset - 50) }) }, "newer"),
      h("span", { "data-testid": "shown" }, shown),
      h("button", { disabled: offset + 50 >= page.total, onclick: () => go("/traces", { ...filters, offset: offset + 50 }) }, "older")));
}

// -- a trace ---------------------------------------------------------------------------------

function tabs(traceId, current) {
  const base = "/trace/" + encodeURIComponent(traceId);
  return h("div", { class: "tabs" },
    [["timeline", base], ["state", base + "/state"], ["budget", base + "/budget"]].map(([name, hash]) =>
      h("a", { href: "#" + hash, class: name === current ? "current" : null }, name)));
}

// The waterfall is rows of a CSS grid, not a table: each row is laid out on its own, and rows
// off screen are not laid out at all (content-visibility), so a trace of a thousand steps
// opens as fast as one of ten.
function row(cls, attrs, ...cells) {
  return h("div", { class: "row " + cls, ...attrs }, cells);
}

function cell(cls, ...children) {
  return h("div", { class: "c " + (cls || "") }, children);
}

async function tracePage(traceId) {
  const t = await api("/api/traces/" + encodeURIComponent(traceId));
  const end = Math.max(1, ...t.steps.map((x) => x.start_ms + x.duration_ms), t.result ? t.result.at_ms : 0);
  // markers go after a step, by its place in the list (fan-out branches share a hop number)
  const lastOfHop = {};
  t.steps.forEach((x, i) => { lastOfHop[x.hop] = i; });
  const verdictsAfter = {};
  for (const v of t.verdicts) (verdictsAfter[lastOfHop[v.after_hop] ?? -1] ||= []).push(v);
  const joinsAfter = {};
  for (const [name, arrivals] of Object.entries(t.joins)) {
    let last = t.steps.length - 1;
    const agents = [];
    t.steps.forEach((x, i) => { if (arrivals.includes(x.event_id)) { last = i; agents.push(x.agent); } });
    (joinsAfter[last] ||= []).push([name, agents]);
  }
  const head = [row("head", {}, ["#", "agent", "emitted", `timeline (${ms(end)})`, "latency", "tokens", "cost", "status", "output"].map((c) => cell("", c)))];
  for (const v of verdictsAfter[-1] || []) head.push(verdictRow(v));
  // each step's rows (the step, its tool calls, the joins and verdicts after it), made when drawn
  const stepRows = (x, index) => {
    const rows = [];
    const branch = x.branch_of ? t.fanouts[x.branch_of] : null;
    const bar = h("div", { class: "bar " + clean(x.status) });
    // geometry through the CSSOM: the page's policy allows no inline style markup
    bar.style.left = (100 * x.start_ms / end) + "%";
    bar.style.width = Math.max(0.3, 100 * x.duration_ms / end) + "%";
    rows.push(row("step" + (branch ? " branch" : ""), { "data-testid": "step" },
      cell("", x.hop),
      cell("", x.agent, branch ? h("div", { class: "meta" }, `fan-out branch ${branch.indexOf(x.event_id) + 1} of ${branch.length}`) : null),
      cell("", x.type),
      cell("", h("div", { class: "track" }, bar)),
      cell("num", ms(x.duration_ms)),
      cell("num", x.tokens),
      cell("num", dollars(x.cost)),
      cell("", status(x.status)),
      cell("", h("button", { class: "more", "data-testid": "show-output", onclick: (e) => {
        // the output is drawn when asked for: a long trace's page stays light
        e.target.replaceWith(h("pre", { "data-testid": "output" }, x.output));
      } }, "v" + x.state_version))));
    for (const call of x.tool_calls) {
      rows.push(row("tool", { "data-testid": "tool-call" },
        cell(""), cell("wide2", "↳ tool ", call.name, call.server ? " (" + call.server + ")" : ""),
        cell(""), cell("num", ms(call.latency_ms)),
        cell("wide2", call.result_chars + " chars"), cell("", status(call.status)), cell("")));
    }
    for (const [name, agents] of joinsAfter[index] || []) {
      rows.push(row("marker join", { "data-testid": "join" },
        cell("", "⋈"), cell("wide", `join ${name}: ${agents.length} arrived (${agents.join(", ")})`)));
    }
    for (const v of verdictsAfter[index] || []) rows.push(verdictRow(v));
    return rows;
  };
  const tail = [];
  if (t.result) {
    tail.push(row("marker terminal", { "data-testid": "terminal" },
      cell("", "■"),
      cell("wide", status(t.result.status), ` at ${ms(t.result.at_ms)}, version ${t.result.state_version}`,
        t.result.reason ? ": " + t.result.reason : "",
        t.result.count > 1 ? h("span", { class: "error" }, ` ${t.result.count} terminal records`) : null,
        t.result.output === null ? h("p", { class: "meta" }, "(no output)") : h("pre", {}, t.result.output))));
  }
  // the first screenful at once, the rest in slices after the page is shown: a trace of a
  // thousand steps opens as soon as one of a hundred, and its other rows follow
  const first = FIRST_ROWS;
  const waterfall = h("div", { class: "waterfall", "data-steps": t.steps.length },
    head, t.steps.slice(0, first).map((x, i) => stepRows(x, i)), tail);
  const more = (from) => {
    if (from >= t.steps.length) { waterfall.dataset.drawn = "all"; return; }
    const slice = document.createDocumentFragment();
    t.steps.slice(from, from + SLICE_ROWS).forEach((x, i) => append(slice, stepRows(x, from + i)));
    waterfall.insertBefore(slice, tail[0] || null);
    setTimeout(() => more(from + SLICE_ROWS), 0);
  };
  setTimeout(() => more(first), 0);
  return h("section", { "data-testid": "trace" },
    h("h1", {}, "Trace ", t.trace_id, " ", status(t.status)), tabs(traceId, "timeline"),
    h("p", { class: "meta" }, `${t.steps.length} steps`, Object.keys(t.fanouts).length ? `, ${Object.keys(t.fanouts).length} fan-out(s)` : ""),
    waterfall);
}

function verdictRow(v) {
  return row("marker verdict", { "data-testid": "verdict" },
    cell("", "⚑"),
    cell("wide", v.action === "halt" ? "halt" : "persona shift", v.agent ? ` of ${v.agent}` : "",
      ` by ${v.source} at ${ms(v.at_ms)}: `, v.reason));
}

async function statePage(traceId, query) {
  const q = new URLSearchParams();
  if (query.get("at")) q.set("at", query.get("at"));
  if (query.get("against")) q.set("against", query.get("against"));
  const st = await api(`/api/traces/${encodeURIComponent(traceId)}/state?${q}`);
  const versions = Array.from({ length: st.versions }, (_, i) => i + 1);
  const pick = (name, value, first) => h("select", { "data-testid": name,
      onchange: (e) => go(`/trace/${traceId}/state`, { at: name === "at" ? e.target.value : st.at, against: name === "against" ? e.target.value : st.against }) },
    first, versions.map((v) => h("option", { value: v, selected: v === value }, "v" + v)));
  const fields = st.fields.map((f) => h("tr", { "data-field": f.name },
    h("td", {}, f.name), h("td", {}, h("pre", {}, f.value)),
    h("td", {}, f.writer || "(task)"), h("td", { class: "num" }, f.written_at ? "v" + f.written_at : "")));
  const diff = st.diff.map((d) => h("tr", { class: d.kind },
    h("td", {}, d.name), h("td", { class: d.kind }, d.kind),
    h("td", {}, d.before !== undefined ? h("pre", {}, d.before) : ""),
    h("td", {}, d.after !== undefined ? h("pre", {}, d.after) : "")));
  const conflicts = st.conflicts.map((c) => h("tr", {},
    h("td", {}, c.field), h("td", {}, `v${c.base_version} → v${c.version}`), h("td", {}, c.policy),
    h("td", {}, `${c.kept.agent} kept`), h("td", {}, `${c.other.agent} lost`)));
  return h("section", { "data-testid": "state" },
    h("h1", {}, "State of ", st.trace_id, " ", status(st.status)), tabs(traceId, "state"),
    h("div", { class: "filters" },
      h("label", {}, "version ", pick("at", st.at, null)),
      h("label", {}, "against ", pick("against", st.against, h("option", { value: 0, selected: st.against === 0 }, "nothing"))),
      h("input", { type: "range", min: 1, max: st.versions, value: st.at, "data-testid": "version-slider",
        onchange: (e) => go(`/trace/${traceId}/state`, { at: e.target.value }) }),
      h("span", { class: "meta" }, `${st.versions} versions`)),
    h("h2", {}, `Fields at v${st.at}`),
    h("table", { "data-testid": "fields" }, h("thead", {}, h("tr", {}, ["field", "value", "written by", "at"].map((c) => h("th", {}, c)))), h("tbody", {}, fields)),
    h("h2", {}, st.against ? `Diff v${st.against} → v${st.at}` : `Diff: everything is new at v${st.at}`),
    h("table", { class: "diff", "data-testid": "diff" }, h("thead", {}, h("tr", {}, ["field", "change", "before", "after"].map((c) => h("th", {}, c)))), h("tbody", {}, diff)),
    h("h2", {}, "Conflicts"),
    conflicts.length ? h("table", { "data-testid": "conflicts" }, h("tbody", {}, conflicts)) : h("p", { class: "meta" }, "none"));
}

async function budgetPage(traceId) {
  const [b, t] = await Promise.all([
    api(`/api/traces/${encodeURIComponent(traceId)}/budget`),
    api("/api/traces/" + encodeURIComponent(traceId)),
  ]);
  const fmt = (name, v) => v === null || v === undefined ? "no limit" : name === "cost" ? dollars(v) : name === "seconds" ? Number(v).toFixed(1) : v;
  const rows = b.rows.map((r) => h("tr", { "data-limit": r.name },
    h("td", {}, r.name), h("td", { class: "num" }, fmt(r.name, r.limit)),
    h("td", { class: "num" }, fmt(r.name, r.used)), h("td", { class: "num" }, fmt(r.name, r.left))));
  const keys = { steps: "hops", tokens: "tokens", cost: "cost", seconds: "seconds" };
  const charts = b.rows.map((r) => burnChart(r, t.burn.map((p) => p[keys[r.name]])));
  return h("section", { "data-testid": "budget" },
    h("h1", {}, "Budget of ", b.trace_id, " ", status(b.status)), tabs(traceId, "budget"),
    h("table", {}, h("thead", {}, h("tr", {}, ["limit", "of", "used", "left"].map((c) => h("th", {}, c)))), h("tbody", {}, rows)),
    h("h2", {}, "Burn-down over the steps"), h("div", { class: "charts" }, charts));
}

function burnChart(row, used) {
  // what is left after each step (or, without a limit, what is used), as a line
  const width = 260, height = 120, pad = 24;
  const values = used.map((u) => row.limit === null ? u : Math.max(0, row.limit - u));
  const top = Math.max(row.limit || 0, ...values, 1e-9);
  const x = (i) => pad + (values.length > 1 ? i * (width - 2 * pad) / (values.length - 1) : 0);
  const y = (v) => height - pad - v * (height - 2 * pad) / top;
  return s("svg", { width, height, "data-testid": "burn-" + row.name, role: "img" },
    s("title", {}, `${row.name} ${row.limit === null ? "used" : "left"} after each step`),
    s("line", { class: "axis", x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }),
    s("line", { class: "axis", x1: pad, y1: pad, x2: pad, y2: height - pad }),
    s("polyline", { class: "burn", points: values.map((v, i) => `${x(i)},${y(v)}`).join(" ") }),
    s("text", { x: pad, y: 14 }, `${row.name} ${row.limit === null ? "used" : "left"}`),
    s("text", { x: width - pad, y: height - 6, "text-anchor": "end" }, `${values.length} steps`));
}

// -- escalations -----------------------------------------------------------------------------

async function escalationsPage() {
  const all = await api("/api/escalations");
  const open = all.filter((e) => e.status === "open");
  const cards = [...open, ...all.filter((e) => e.status !== "open")].map(escalationCard);
  return h("section", { "data-testid": "escalations" },
    h("h1", {}, `Escalations (${open.length} open)`),
    cards.length ? cards : h("p", { class: "meta" }, "none"));
}

function escalationCard(e) {
  const out = h("div", {});
  const card = h("div", { class: "card " + clean(e.status), "data-escalation": e.escalation_id, "data-trace": e.trace_id },
    h("div", {}, status(e.status), " ", link(e.trace_id, "/trace/" + encodeURIComponent(e.trace_id)), " at v" + e.state_version),
    h("div", { class: "meta" }, "escalation ", e.escalation_id, " raised ", age(e.created_at), " ago"),
    h("div", {}, e.reason),
    h("details", {}, h("summary", {}, "evidence"), h("pre", { "data-testid": "evidence" }, e.evidence)));
  if (e.continuation_trace_id) {
    card.append(h("div", {}, "continued in ", link(e.continuation_trace_id, "/trace/" + encodeURIComponent(e.continuation_trace_id))));
  }
  if (e.guidance) card.append(h("div", { class: "meta" }, "guidance: ", e.guidance));
  if (e.status === "open") {
    const guidance = h("textarea", { "data-testid": "guidance", placeholder: "guidance for the continuation", oninput: () => { editing = true; } });
    const act = async (path, body) => {
      try {
        const done = await api(path, body);
        editing = false;
        out.replaceChildren(h("div", { class: "message", "data-testid": "done" },
          done.status, done.continuation_trace_id ? [": continuation trace ", link(done.continuation_trace_id, "/trace/" + encodeURIComponent(done.continuation_trace_id))] : ""));
      } catch (error) {
        out.replaceChildren(h("div", { class: "error" }, error.message));
      }
    };
    const base = "/api/escalations/" + encodeURIComponent(e.escalation_id);
    card.append(guidance,
      h("button", { "data-testid": "resume", onclick: () => act(base + "/resume", { guidance: guidance.value }) }, "Resume with guidance"),
      h("button", { "data-testid": "close", onclick: () => {
        out.replaceChildren(h("span", {}, "Close without resuming? "),
          h("button", { "data-testid": "confirm-close", onclick: () => act(base + "/close", {}) }, "Yes, close it"),
          h("button", { onclick: () => out.replaceChildren() }, "Cancel"));
      } }, "Close"));
  }
  card.append(out);
  return card;
}

// -- dead letters ----------------------------------------------------------------------------

async function dlqPage() {
  const letters = await api("/api/dlq");
  return h("section", { "data-testid": "dlq" },
    h("h1", {}, `Dead letters (${letters.length})`),
    letters.length ? letters.map(letterCard) : h("p", { class: "meta" }, "none"));
}

function letterCard(d) {
  const out = h("div", {});
  const editor = h("textarea", { "data-testid": "fixed", value: d.original_text, oninput: () => { editing = true; } });
  const requeue = async () => {
    try {
      const sent = await api("/api/dlq/" + encodeURIComponent(d.id) + "/requeue", { text: editor.value });
      editing = false;
      out.replaceChildren(h("div", { class: "message", "data-testid": "requeued" },
        `requeued to ${sent.topic} partition ${sent.partition} offset ${sent.offset}`));
    } catch (error) {
      out.replaceChildren(h("div", { class: "error" }, error.message));
    }
  };
  return h("div", { class: "card", "data-letter": d.id, "data-key": d.key || "" },
    h("div", {}, h("b", {}, d.id), " ", d.reason),
    h("div", { class: "meta" }, `from ${d.topic} partition ${d.partition} offset ${d.offset}, key ${d.key || "(none)"}, refused by ${d.consumer}, ${age(d.created_at)} ago`),
    h("pre", { "data-testid": "original" }, d.original_text),
    h("details", {}, h("summary", { "data-testid": "edit" }, "fix and requeue"), editor,
      h("button", { "data-testid": "requeue", onclick: () => {
        out.replaceChildren(h("span", {}, `Send ${new TextEncoder().encode(editor.value).length} bytes back to ${d.topic}? `),
          h("button", { "data-testid": "confirm-requeue", onclick: requeue }, "Yes, requeue"),
          h("button", { onclick: () => out.replaceChildren() }, "Cancel"));
      } }, "Requeue…")),
    out);
}

// -- the mesh --------------------------------------------------------------------------------

async function meshPage() {
  const m = await api("/api/mesh");
  return h("section", { "data-testid": "mesh" },
    h("h1", {}, "Mesh ", m.name), meshGraph(m),
    h("table", {},
      h("thead", {}, h("tr", {}, ["agent", "kind", "subscribes", "emits", "replicas", "live", "lag"].map((c) => h("th", {}, c)))),
      h("tbody", {}, m.agents.map((a) => h("tr", { "data-agent": a.name },
        h("td", {}, a.name), h("td", {}, a.kind), h("td", {}, a.subscribe.join(", ")),
        h("td", {}, [...a.emits, ...(a.finishes ? ["(result)"] : [])].join(", ")),
        h("td", { class: "num" }, a.replicas), h("td", { class: "num" }, a.live),
        h("td", { class: "num" }, a.lag === null ? "?" : a.lag))))));
}

function meshGraph(m) {
  // nodes: the task, each agent, each join, the result; an edge per event type that links them
  const nodes = [{ id: "task", label: "task" }];
  const edges = [];
  const listeners = (type) => [
    ...m.agents.filter((a) => a.subscribe.includes(type)).map((a) => "agent:" + a.name),
    ...m.joins.filter((j) => j.wait_for === type).map((j) => "join:" + j.name),
  ];
  for (const type of m.entry) for (const to of listeners(type)) edges.push(["task", to, type]);
  for (const a of m.agents) {
    nodes.push({ id: "agent:" + a.name, label: a.name });
    for (const type of a.emits) for (const to of listeners(type)) edges.push(["agent:" + a.name, to, type]);
    if (a.finishes) edges.push(["agent:" + a.name, "result", "finish"]);
  }
  for (const j of m.joins) {
    nodes.push({ id: "join:" + j.name, label: `join ${j.name} (${j.count})` });
    for (const to of listeners(j.emit)) edges.push(["join:" + j.name, to, j.emit]);
  }
  nodes.push({ id: "result", label: "result" });
  // columns by the first distance from the task (loops point back)
  const depth = { task: 0 };
  const queue = ["task"];
  while (queue.length) {
    const at = queue.shift();
    for (const [from, to] of edges) if (from === at && !(to in depth)) { depth[to] = depth[at] + 1; queue.push(to); }
  }
  const last = Math.max(0, ...Object.values(depth));
  if (!("result" in depth)) depth.result = last + 1;
  const columns = {};
  for (const n of nodes) { n.col = depth[n.id] ?? last + 1; n.row = (columns[n.col] = (columns[n.col] || 0) + 1) - 1; }
  const W = 230, H = 60, bw = 120, bh = 26;
  const at = Object.fromEntries(nodes.map((n) => [n.id, { x: 10 + n.col * W, y: 20 + n.row * H }]));
  const width = 20 + (Math.max(...nodes.map((n) => n.col)) + 1) * W;
  const height = 40 + Math.max(...Object.values(columns)) * H;
  return s("svg", { width, height, "data-testid": "graph", role: "img" },
    s("title", {}, `agents and routes of mesh ${m.name}`),
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" },
      s("path", { d: "M0,0 L10,5 L0,10 z" }))),
    edges.map(([from, to, label]) => {
      const a = at[from], b = at[to];
      const x1 = a.x + bw, y1 = a.y + bh / 2, x2 = b.x, y2 = b.y + bh / 2;
      const back = x2 <= x1;
      const d = back ? `M${a.x + bw / 2},${a.y + bh} C${a.x + bw / 2},${a.y + bh + 30} ${b.x + bw / 2},${b.y + bh + 30} ${b.x + bw / 2},${b.y + bh}`
        : `M${x1},${y1} C${x1 + 20},${y1} ${x2 - 20},${y2} ${x2},${y2}`;
      return s("g", { class: "edge-group" }, s("path", { class: "edge", d, "marker-end": "url(#arrow)" }),
        s("text", { x: (x1 + x2) / 2 - (back ? bw / 2 : 0), y: back ? Math.max(a.y, b.y) + bh + 28 : (y1 + y2) / 2 - 4, "text-anchor": "middle" }, label));
    }),
    nodes.map((n) => s("g", { class: "node", "data-node": n.id },
      s("rect", { x: at[n.id].x, y: at[n.id].y, width: bw, height: bh, rx: 4 }),
      s("text", { x: at[n.id].x + bw / 2, y: at[n.id].y + 17, "text-anchor": "middle" }, n.label))));
}

// -- live updates ----------------------------------------------------------------------------

function listen() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/events?token=" + encodeURIComponent(TOKEN));
  events.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  events.onerror = () => { live.textContent = "reconnecting"; live.classList.remove("on"); };
  events.addEventListener("change", () => {
    const focused = document.activeElement && main.contains(document.activeElement)
      && ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    const open = main.querySelector("details[open]");
    if (!editing && !focused && !open) render();
  });
}

window.addEventListener("hashchange", () => { editing = false; render(); });
render().then(listen); // the first page's reads go before the stream's

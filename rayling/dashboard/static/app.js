// The rayling dashboard's pages: each tab reads its JSON endpoint (docs/dashboard.md)
// and draws plain tables; the overview redraws every second.
"use strict";

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

async function getJSON(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (response.status === 401) { location.href = "/login"; throw new Error("sign in"); }
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

async function rows(kind, query = "") {
  const answer = await getJSON(`/api/v0/${kind}?limit=10000${query}`);
  return answer.data.result.result;
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function when(ms) { return ms ? new Date(ms).toLocaleTimeString() : ""; }

function table(columns, items, options = {}) {
  if (!items.length) return el("p", {}, "(none)");
  const head = el("tr", {}, ...columns.map(([title]) => el("th", {}, title)));
  const body = items.map((item) => {
    const attrs = options.rowAttrs ? options.rowAttrs(item) : {};
    if (options.onclick) {
      attrs.class = "clickable";
      attrs.onclick = () => options.onclick(item);
    }
    return el("tr", attrs, ...columns.map(([, get]) => {
      const value = get(item);
      return el("td", { class: String(value) }, value == null ? "" : String(value));
    }));
  });
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function chart(points, max, color) {
  // The last ten minutes as one line; ``points``: [t, value] pairs.
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 60");
  svg.setAttribute("preserveAspectRatio", "none");
  if (points.length > 1 && max > 0) {
    const end = points[points.length - 1][0];
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.map(([t, v]) =>
      `${600 - (end - t)},${60 - (58 * (v || 0)) / max}`).join(" "));
    line.setAttribute("stroke", color);
    svg.append(line);
  }
  return svg;
}

// -- overview ---------------------------------------------------------------------------
async function drawOverview() {
  const cluster = await getJSON("/api/cluster");
  const cards = cluster.nodes.map((node) => {
    const load = node.load || {};
    const gpu = node.resources.GPU
      ? `${(node.resources.GPU - (node.available.GPU || 0)).toFixed(1)} / ${node.resources.GPU} in use`
      : "none";
    const cpus = node.resources.CPU || 0;
    const history = node.history;
    return el("div", { class: "node", id: `node-${node.node_id}` },
      el("h3", {}, `${node.is_head ? "Head" : "Node"} ${node.ip} (${node.hostname}) `,
        el("span", { class: node.alive ? "ALIVE" : "DEAD" }, node.alive ? "ALIVE" : "DEAD")),
      el("div", { class: "figure" }, "CPU use",
        el("span", { class: "value cpu" }, load.cpu_percent == null ? "" : `${load.cpu_percent.toFixed(1)} %`)),
      chart(history.map((s) => [s.t, s.cpu]), 100, "#1d6fd8"),
      el("div", { class: "figure" }, "Memory",
        el("span", { class: "value mem" }, load.mem_total ? `${bytes(load.mem_used)} / ${bytes(load.mem_total)}` : "")),
      chart(history.map((s) => [s.t, s.mem]), load.mem_total, "#8a3ffc"),
      el("div", { class: "figure" }, "Object store",
        el("span", { class: "value store" }, `${bytes(node.store_used)} / ${bytes(node.store_capacity)}`)),
      chart(history.map((s) => [s.t, s.store]), node.store_capacity, "#d97706"),
      el("div", { class: "figure" }, "CPUs (logical) in use",
        el("span", { class: "value cpus" }, `${(cpus - (node.available.CPU || 0)).toFixed(1)} / ${cpus}`)),
      el("div", { class: "figure" }, "GPUs", el("span", { class: "value gpu" }, gpu)),
      el("div", { class: "figure" }, "Node id", el("code", {}, node.node_id.slice(0, 16))));
  });
  $("#nodes").replaceChildren(el("div", { class: "nodes" }, ...cards));
  $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// -- jobs -------------------------------------------------------------------------------
async function drawJobs() {
  const jobs = await getJSON("/api/jobs/");
  $("#jobs-table").replaceChildren(table([
    ["Job", (j) => j.job_id], ["Type", (j) => j.type], ["Status", (j) => j.status],
    ["Driver pid", (j) => j.driver_info.pid], ["Namespace", (j) => j.namespace],
    ["Started", (j) => when(j.start_time)], ["Ended", (j) => when(j.end_time)],
  ], jobs));
}

// -- tasks ------------------------------------------------------------------------------
async function drawTasks() {
  const summary = (await getJSON("/api/v0/tasks/summarize")).data.result.cluster.summary;
  const byName = Object.values(summary);
  const states = [...new Set(byName.flatMap((e) => Object.keys(e.state_counts)))].sort();
  $("#task-summary").replaceChildren(table(
    [["Name", (e) => e.func_or_class_name], ["Type", (e) => e.type],
     ...states.map((s) => [s, (e) => e.state_counts[s] || 0])], byName));
  const form = new FormData($("#task-filter"));
  let query = "";
  for (const key of ["state", "name"]) {
    const value = form.get(key);
    if (value) query += `&filter_keys=${key}&filter_predicates==&filter_values=${encodeURIComponent(value)}`;
  }
  const tasks = await rows("tasks", query);  // (unfinished first, then the newest)
  $("#task-table").replaceChildren(table([
    ["Task", (t) => t.task_id.slice(0, 16)], ["Attempt", (t) => t.attempt_number],
    ["Name", (t) => t.name], ["State", (t) => t.state], ["Type", (t) => t.type],
    ["Node", (t) => (t.node_id || "").slice(0, 12)], ["Worker pid", (t) => t.worker_pid],
    ["Started", (t) => when(t.start_time_ms)],
    ["Took (ms)", (t) => (t.end_time_ms && t.start_time_ms ? t.end_time_ms - t.start_time_ms : "")],
    ["Error", (t) => t.error_type],
  ], tasks.slice(0, 500), {
    rowAttrs: (t) => ({ "data-task-id": t.task_id }),
    onclick: showTask,
  }));
}

async function showTask(task) {
  const parts = [el("h3", {}, `Task ${task.name} (${task.task_id})`),
    el("pre", { class: "fields" }, JSON.stringify({ ...task, error_message: undefined }, null, 2))];
  if (task.error_message) parts.push(el("h4", {}, "Error"), el("pre", { class: "error" }, task.error_message));
  if (task.worker_pid) {
    const response = await fetch(`/api/v0/logs/file?task_id=${task.task_id}&attempt_number=${task.attempt_number}`);
    parts.push(el("h4", {}, "Log"), el("pre", { class: "log" }, response.ok ? await response.text() : "(no log)"));
  }
  $("#task-detail").replaceChildren(...parts);
}

// -- actors -----------------------------------------------------------------------------
async function drawActors() {
  const actors = await rows("actors");
  $("#actor-table").replaceChildren(table([
    ["Actor", (a) => a.actor_id.slice(0, 16)], ["Class", (a) => a.class_name],
    ["Name", (a) => a.name], ["State", (a) => a.state], ["Restarts", (a) => a.num_restarts],
    ["Node", (a) => (a.node_id || "").slice(0, 12)], ["Pid", (a) => a.pid],
    ["Death cause", (a) => a.death_cause],
  ], actors, { rowAttrs: (a) => ({ "data-actor-id": a.actor_id }), onclick: showActor }));
}

async function showActor(actor) {
  const response = await fetch(`/api/v0/logs/file?actor_id=${actor.actor_id}`);
  $("#actor-detail").replaceChildren(
    el("h3", {}, `Actor ${actor.class_name} (${actor.actor_id})`),
    el("pre", { class: "fields" }, JSON.stringify(actor, null, 2)),
    el("h4", {}, "Log"), el("pre", { class: "log" }, response.ok ? await response.text() : "(no log)"));
}

// -- objects, groups, logs ----------------------------------------------------------------
async function drawObjects() {
  const summary = (await getJSON("/api/v0/objects/summarize")).data.result.cluster;
  $("#object-summary").replaceChildren(el("p", {},
    `${summary.total_objects} objects, ${summary.total_size_mb.toFixed(1)} MiB referenced`));
  const objects = (await rows("objects")).sort((a, b) => (b.object_size || 0) - (a.object_size || 0));
  $("#object-table").replaceChildren(table([
    ["Object", (o) => o.object_id.slice(0, 24)], ["Size", (o) => bytes(o.object_size)],
    ["Reference", (o) => o.reference_type], ["Held by", (o) => `${o.type} ${o.pid ?? ""}`],
    ["Address", (o) => o.ip], ["Status", (o) => o.task_status],
  ], objects.slice(0, 1000)));
}

async function drawGroups() {
  const groups = await rows("placement_groups");
  $("#group-table").replaceChildren(table([
    ["Group", (g) => g.placement_group_id], ["Name", (g) => g.name], ["State", (g) => g.state],
    ["Strategy", (g) => g.strategy],
    ["Bundles", (g) => g.bundles.map((b) => JSON.stringify(b.unit_resources)).join(" ")],
  ], groups));
}

async function drawLogs() {
  const nodes = (await getJSON("/api/cluster")).nodes.filter((n) => n.alive);
  const blocks = [];
  for (const node of nodes) {
    const files = (await getJSON(`/api/v0/logs?node_id=${node.node_id}`)).data.result;
    const links = Object.values(files).flat().map((name) => el("a", {
      href: "#logs", "data-file": name,
      onclick: async () => {
        const response = await fetch(`/api/v0/logs/file?node_id=${node.node_id}&filename=${encodeURIComponent(name)}`);
        $("#log-text").textContent = await response.text();
      },
    }, name));
    blocks.push(el("h3", {}, `${node.ip} (${node.node_id.slice(0, 12)})`),
      el("p", {}, ...links.flatMap((a) => [a, " "])));
  }
  $("#log-nodes").replaceChildren(...blocks);
}

// -- tabs -------------------------------------------------------------------------------
const PAGES = { overview: drawOverview, jobs: drawJobs, tasks: drawTasks, actors: drawActors,
  objects: drawObjects, groups: drawGroups, logs: drawLogs };
let timer = null;

function show() {
  const page = (location.hash || "#overview").slice(1);
  const draw = PAGES[page] || drawOverview;
  for (const section of document.querySelectorAll(".page")) {
    section.classList.toggle("active", section.id === page);
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === `#${page}`);
  }
  clearInterval(timer);
  draw().catch((e) => console.error(e));
  if (page === "overview") timer = setInterval(() => drawOverview().catch(() => {}), 1000);
}

$("#task-filter").addEventListener("submit", (event) => { event.preventDefault(); drawTasks(); });
window.addEventListener("hashchange", show);
show();

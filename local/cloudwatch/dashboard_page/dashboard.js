// Draws /api/dashboard: the deployed dashboard body, widget by widget
// (local/cloudwatch/dashboard.py).
"use strict";
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];
const charts = {};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined)
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function clock(t) { return new Date(t * 1000).toISOString().slice(11, 19); }
function fmt(v) { return v === null || v === undefined ? "-" :
  Math.abs(v) >= 1000 ? v.toLocaleString("en-US", {maximumFractionDigits: 0}) : +v.toPrecision(4); }

function drawRun(run) {
  document.getElementById("run").textContent =
    `Run ${run.start_iso} to ${run.end_iso} (UTC)${run.live ? ", live" : ""}: ` +
    `${run.datapoints} datapoints ingested; ${run.widgets} metric widgets, ` +
    `${run.with_data} with data, ${run.no_data} with no data in this run.`;
}

function drawAlarms(alarms) {
  const box = document.getElementById("alarms");
  box.replaceChildren(...alarms.map(a => el("div", {class: `alarm ${a.state}`, "data-alarm": a.name,
      title: a.description},
    el("div", {}, el("span", {class: "state"}, a.state), " ", a.name.replace(/^.*?-(?=[A-Z])/, "")),
    el("div", {class: "history"}, `${a.operator} ${fmt(a.threshold)}, ${a.rule}; worst ${fmt(a.worst)}` +
      (a.fired ? `; fired ${a.first_alarm_iso.slice(11, 19)}` : "")),
    el("div", {class: "history"}, "history: " + a.history.map(h => `${clock(h.time)} ${h.state}`).join(" \u2192 ")))));
}

function widgetNode(w, alarmsByName, later) {
  const node = el("div", {class: `widget ${w.type}`, style:
    `grid-column: ${w.x + 1} / span ${w.width}; grid-row: ${w.y + 1} / span ${w.height}`,
    "data-title": w.title || ""});
  if (w.type === "text") {
    const text = (w.markdown || "").replace(/\[([^\]]*)\]\([^)]*\)/g, "$1").replace(/[#*]/g, "").trim();
    node.append(el("h2", {}, text));
    return node;
  }
  const badges = el("div", {class: "badges"});
  for (const name of w.alarms || []) {
    const a = alarmsByName[name];
    if (a) badges.append(el("span", {class: a.state, "data-alarm-state": a.state}, `${a.state}`));
  }
  node.append(el("h2", {}, w.title, " ", el("span", {class: "range"},
    `${w.period} s periods, ${w.range_label}`)), badges);
  node.dataset.hasData = w.has_data ? "true" : "false";
  if (!w.has_data) {
    const names = w.lines.map(l => l.label).filter(Boolean).slice(0, 4).join(", ");
    node.append(el("div", {class: "no-data"}, `No data in this run` + (names ? ` (${names})` : "")));
    return node;
  }
  const canvasBox = el("div", {class: "chart"});
  const canvas = el("canvas");
  canvasBox.append(canvas);
  const legend = el("div", {class: "legend"});
  node.append(canvasBox, legend);
  const [lo, hi] = w.range;
  const datasets = [];
  w.lines.forEach((line, i) => {
    const color = line.color || PALETTE[i % PALETTE.length];
    const unit = line.unit && line.unit !== "None" ? ` (${line.unit})` : "";
    legend.append(el("div", {class: line.has_data ? "line" : "line nodata"},
      el("span", {class: "swatch", style: `background:${color}`}),
      `${line.label}${line.stat ? " \u00b7 " + line.stat : ""} \u00b7 ${line.period} s${unit}` +
      (line.axis === "right" ? " \u00b7 right axis" : "") + (line.has_data ? "" : ` \u2014 ${line.error || "no data in this run"}`)));
    if (!line.has_data) return;
    datasets.push({label: line.label, borderColor: color, backgroundColor: color, borderWidth: 1.5,
      pointRadius: 2, spanGaps: false, yAxisID: line.axis === "right" ? "right" : "left",
      data: line.points.map(([t, v]) => ({x: t, y: v}))});
  });
  for (const a of w.annotations) {
    const color = a.color || "#d13212";
    legend.append(el("div", {class: "limit", "data-limit": a.value},
      el("span", {class: "swatch", style: `border-color:${color}`}),
      `${a.label || "threshold"}: ${fmt(a.value)}` + (a.axis === "right" ? " (right axis)" : "")));
    datasets.push({label: a.label, borderColor: color, borderDash: [6, 4], borderWidth: 1.5,
      pointRadius: 0, yAxisID: a.axis === "right" ? "right" : "left",
      data: [{x: lo, y: a.value}, {x: hi, y: a.value}]});
  }
  const axis = (side) => {
    const cfg = (w.y_axis || {})[side] || {};
    return {display: datasets.some(d => d.yAxisID === side), position: side,
      min: cfg.min, max: cfg.max, beginAtZero: true,
      title: {display: !!cfg.label, text: cfg.label}, ticks: {font: {size: 10}}};
  };
  charts[w.key] && charts[w.key].destroy();
  later.push(() => charts[w.key] = new Chart(canvas, {type: "line", data: {datasets},
    options: {animation: false, responsive: true, maintainAspectRatio: false,
      plugins: {legend: {display: false}},
      scales: {x: {type: "linear", min: lo, max: hi, ticks: {callback: clock, maxTicksLimit: 6,
        font: {size: 10}}}, left: axis("left"), right: {...axis("right"), grid: {drawOnChartArea: false}}}}}));
  return node;
}

async function refresh() {
  const response = await fetch("/api/dashboard");
  const data = await response.json();
  if (data.error) { document.getElementById("run").textContent = "error: " + data.error; return data; }
  drawRun(data.run);
  drawAlarms(data.alarms);
  const alarmsByName = Object.fromEntries(data.alarms.map(a => [a.name, a]));
  const grid = document.getElementById("grid");
  const nodes = [], later = [];
  data.dashboards.forEach((d, di) => d.widgets.forEach((w, wi) => {
    w.key = `${di}-${wi}`;
    nodes.push(widgetNode(w, alarmsByName, later));
  }));
  grid.replaceChildren(...nodes);
  later.forEach(draw => draw());
  document.body.dataset.ready = "true";
  return data;
}

refresh().then(data => { if (data.run && data.run.live) setInterval(refresh, 5000); });

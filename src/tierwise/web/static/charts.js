/* tierwise charts, drawn with plotly.js from the JSON in #page-data (dashboard pages) or #report-data (the offline
   HTML report, which inlines this file): one drawing code for both, so a chart looks the same in either. Each
   chart goes into the element "chart-" + its key. */
(function () {
  "use strict";
  var holder = document.getElementById("page-data") || document.getElementById("report-data");
  if (!holder || typeof Plotly === "undefined") { return; }
  var data = JSON.parse(holder.textContent);
  var COLORS = { customers: "#9fb3c8", revenue: "#1f4e8c" };
  var FONT = { family: getComputedStyle(document.body).fontFamily, size: 12, color: "#1f2933" };
  var CONFIG = { displayModeBar: false, responsive: true };
  var rendered = [];

  function layout(extra) {
    var base = {
      font: FONT, margin: { l: 10, r: 16, t: 8, b: 40 }, paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)", hoverlabel: { font: { family: FONT.family } },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }
    };
    for (var k in extra) { base[k] = extra[k]; }
    return base;
  }

  function pct(v) { return (v * 100).toFixed(1) + "%"; }

  // Plotly reads every text it draws (trace names, tick labels, hover text, annotations) as its own small HTML
  // (<a href>, <b>, <br> …), and the texts here come from the data (a province, a class label, a campaign).
  // Escaped, they are drawn as written: plotly turns &lt; back into "<" as text, never into markup or a link.
  function escapeText(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function escaped(value) {
    if (typeof value === "string") { return escapeText(value); }
    if (Array.isArray(value)) { return value.map(escaped); }
    if (value && typeof value === "object") {
      var out = {};
      Object.keys(value).forEach(function (k) { out[k] = escaped(value[k]); });
      return out;
    }
    return value;
  }

  function plot(id, traces, lay) {
    var el = document.getElementById(id);
    if (!el) { return; }
    Plotly.newPlot(el, traces, lay, CONFIG);
    el.setAttribute("data-rendered", "true");
    rendered.push(el);
  }

  function bars(id, c) {
    var traces = c.series.map(function (s, i) {
      return {
        type: "bar", orientation: "h", name: s.name, y: c.labels, x: s.values, customdata: s.counts,
        text: s.values.map(pct), textposition: "outside", cliponaxis: false,
        marker: { color: i === 0 ? COLORS.customers : COLORS.revenue },
        hovertemplate: "%{y}<br>" + s.name + ": %{x:.1%}<br>" + c.count_names[i] + ": %{customdata:,.0f}<extra></extra>"
      };
    });
    var maxv = 0;
    c.series.forEach(function (s) { s.values.forEach(function (v) { maxv = Math.max(maxv, v); }); });
    plot(id, traces, layout({
      barmode: "group", bargap: 0.25, height: Math.max(220, 60 + c.labels.length * 34),
      margin: { l: 10, r: 16, t: 30, b: 30 },
      xaxis: { tickformat: ".0%", range: [0, Math.min(maxv > 0.8 ? 1.15 : 1, maxv * 1.2 + 0.02)], gridcolor: "#e4e7eb",
               zeroline: false },
      yaxis: { autorange: "reversed", automargin: true }
    }));
  }

  function heatmap(id, c) {
    var x = c.f.map(function (f) { return "F" + f; });
    var y = c.r.map(function (r) { return "R" + r; });
    [["customers", c.customers.map(function (row) { return row.map(function (v) { return v.toLocaleString(); }); }),
      ",.0f"],
     ["revenue", c.revenue_text, ",.0f"]].forEach(function (spec, i) {
      plot(id + "-" + spec[0], [{
        type: "heatmap", x: x, y: y, z: c[spec[0]], text: spec[1], texttemplate: "%{text}",
        colorscale: [[0, "#f5f7fa"], [0.5, "#9fb3c8"], [1, "#243b53"]], showscale: false, xgap: 2, ygap: 2,
        hovertemplate: "%{y} × %{x}<br>" + c.titles[i] + ": %{z:" + spec[2] + "}<extra></extra>"
      }], layout({
        height: 300, margin: { l: 10, r: 10, t: 8, b: 50 },
        xaxis: { title: { text: c.f_axis }, side: "bottom" },
        yaxis: { title: { text: c.r_axis }, automargin: true, autorange: "reversed" }
      }));
    });
  }

  function pareto(id, c) {
    var shapes = [], annotations = [];
    c.cutoffs.forEach(function (y, i) {
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, y0: y, y1: y, line: { color: "#9aa5b1", dash: "dot", width: 1 } });
      annotations.push({ xref: "paper", x: 1, y: y, text: c.cutoff_names[i] + " " + pct(y), showarrow: false,
                         xanchor: "right", yanchor: "bottom", font: { size: 11, color: "#616e7c" } });
    });
    plot(id, [
      { type: "scatter", mode: "lines", x: [0, 1], y: [0, 1], hoverinfo: "skip", showlegend: false,
        line: { color: "#cbd2d9", dash: "dash", width: 1 } },
      { type: "scatter", mode: "lines", x: c.x, y: c.y, fill: "tozeroy", fillcolor: "rgba(31,78,140,0.10)",
        line: { color: COLORS.revenue, width: 2.5 }, showlegend: false,
        hovertemplate: "%{x:.0%} → %{y:.1%}<extra></extra>" }
    ], layout({
      height: 320, margin: { l: 10, r: 16, t: 8, b: 50 }, shapes: shapes, annotations: annotations,
      xaxis: { title: { text: c.x_axis }, tickformat: ".0%", range: [0, 1], gridcolor: "#e4e7eb" },
      yaxis: { title: { text: c.y_axis }, tickformat: ".0%", range: [0, 1.02], gridcolor: "#e4e7eb", automargin: true }
    }));
  }

  function histogram(id, c) {
    plot(id, [{
      type: "bar", x: c.x, y: c.customers, width: c.width * 0.92, customdata: c.labels,
      marker: { color: COLORS.revenue }, hovertemplate: "%{customdata}<br>" + c.y_axis + ": %{y:,}<extra></extra>"
    }], layout({
      height: 300, margin: { l: 10, r: 16, t: 8, b: 50 },
      xaxis: { title: { text: c.x_axis }, tickformat: c.tickformat || "~s", gridcolor: "#e4e7eb" },
      yaxis: { title: { text: c.y_axis }, gridcolor: "#e4e7eb", automargin: true }
    }));
  }

  // Predicted and actual holdout purchases per calibration-frequency bucket (the BG/NBD paper's figure).
  function buckets(id, c) {
    plot(id, c.series.map(function (s, i) {
      return {
        type: "bar", name: s.name, x: c.labels, y: s.values, customdata: c.customers,
        marker: { color: i === 0 ? COLORS.customers : COLORS.revenue },
        hovertemplate: c.x_axis + ": %{x}<br>" + s.name + ": %{y:.2f}<br>" + c.customers_name +
          ": %{customdata:,}<extra></extra>"
      };
    }), layout({
      barmode: "group", bargap: 0.25, height: 300, margin: { l: 10, r: 16, t: 30, b: 50 },
      xaxis: { title: { text: c.x_axis }, type: "category" },
      yaxis: { title: { text: c.y_axis }, gridcolor: "#e4e7eb", automargin: true, rangemode: "tozero" }
    }));
  }

  // Share of holdout revenue in the top 10% / 20% of customers, per ranking.
  function capture(id, c) {
    plot(id, c.series.map(function (s, i) {
      return {
        type: "bar", orientation: "h", name: s.name, y: c.labels, x: s.values, customdata: c.gini,
        text: s.values.map(pct), textposition: "outside", cliponaxis: false,
        marker: { color: i === 0 ? COLORS.customers : COLORS.revenue },
        hovertemplate: "%{y}<br>" + s.name + ": %{x:.1%}<br>Gini: %{customdata:.3f}<extra></extra>"
      };
    }), layout({
      barmode: "group", bargap: 0.25, height: Math.max(220, 60 + c.labels.length * 40),
      margin: { l: 10, r: 16, t: 30, b: 40 },
      xaxis: { title: { text: c.x_axis }, tickformat: ".0%", range: [0, 1.05], gridcolor: "#e4e7eb", zeroline: false },
      yaxis: { autorange: "reversed", automargin: true }
    }));
  }

  // A sample of customers on two principal components, one trace (and legend entry) per cluster.
  function scatter(id, c) {
    plot(id, c.series.map(function (s) {
      return {
        type: "scatter", mode: "markers", name: s.name, x: s.x, y: s.y,
        marker: { color: s.color, size: 5, opacity: 0.7 },
        hovertemplate: s.name + "<extra></extra>"
      };
    }), layout({
      height: 340, margin: { l: 10, r: 16, t: 30, b: 50 },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11 } },
      xaxis: { title: { text: c.x_axis }, zeroline: false, gridcolor: "#e4e7eb", showticklabels: false },
      yaxis: { title: { text: c.y_axis }, zeroline: false, gridcolor: "#e4e7eb", showticklabels: false, automargin: true }
    }));
  }

  // A measure by number of clusters k (silhouette, inertia), the chosen k marked.
  function curve(id, c) {
    var at = c.x.indexOf(c.chosen);
    var traces = [{
      type: "scatter", mode: "lines+markers", name: c.name, x: c.x, y: c.y, showlegend: false,
      line: { color: COLORS.revenue, width: 2 }, marker: { color: COLORS.revenue, size: 6 },
      hovertemplate: "k = %{x}<br>" + c.name + ": %{y:" + c.format + "}<extra></extra>"
    }];
    if (at >= 0) {
      traces.push({
        type: "scatter", mode: "markers", name: c.chosen_name, x: [c.x[at]], y: [c.y[at]], showlegend: false,
        marker: { color: "#e07b39", size: 12, symbol: "circle-open", line: { width: 3 } },
        hovertemplate: c.chosen_name + "<extra></extra>"
      });
    }
    plot(id, traces, layout({
      height: 260, margin: { l: 10, r: 16, t: 8, b: 50 },
      xaxis: { title: { text: c.x_axis }, dtick: 1, gridcolor: "#e4e7eb" },
      yaxis: { title: { text: c.y_axis }, tickformat: c.format === ".2f" ? ".2f" : "~s", gridcolor: "#e4e7eb",
               automargin: true }
    }));
  }

  // Feature importance of a learned model, largest on top.
  function importance(id, c) {
    plot(id, [{
      type: "bar", orientation: "h", y: c.labels, x: c.values, marker: { color: COLORS.revenue },
      hovertemplate: "%{y}: %{x:" + c.format + "}<extra></extra>"
    }], layout({
      height: Math.max(220, 50 + c.labels.length * 24), margin: { l: 10, r: 16, t: 8, b: 50 },
      xaxis: { title: { text: c.x_axis }, tickformat: c.format, gridcolor: "#e4e7eb", zeroline: false },
      yaxis: { autorange: "reversed", automargin: true }
    }));
  }

  // Class sizes per run (as-of date), stacked; revenue in the hover.
  function trend(id, c) {
    plot(id, c.series.map(function (s) {
      return {
        type: "bar", name: s.name, x: c.x, y: s.values, customdata: s.revenue, marker: { color: s.color },
        hovertemplate: "%{x}<br>" + s.name + ": %{y:,}<br>" + c.revenue_name + ": %{customdata:,.0f}<extra></extra>"
      };
    }), layout({
      barmode: "stack", bargap: 0.3, height: 320, margin: { l: 10, r: 16, t: 40, b: 50 },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11 } },
      xaxis: { title: { text: c.x_axis }, type: "category" },
      yaxis: { title: { text: c.y_axis }, gridcolor: "#e4e7eb", automargin: true }
    }));
  }

  // Previous classes (and the new customers) on the left, current classes (and the ones gone) on the right.
  function sankey(id, c) {
    var l = c.links;
    plot(id, [{
      type: "sankey", arrangement: "snap", valueformat: ",.0f",
      node: { label: c.labels, color: c.colors, pad: 14, thickness: 16, line: { color: "#ffffff", width: 0.5 },
              hovertemplate: "%{label}: %{value:,} " + c.customers_name + "<extra></extra>" },
      link: { source: l.source, target: l.target, value: l.value, color: l.color,
              customdata: l.revenue.map(function (r, i) { return [l.kind[i], r]; }),
              hovertemplate: "%{source.label} → %{target.label} (%{customdata[0]})<br>" + c.customers_name +
                ": %{value:,}<br>" + c.revenue_name + ": %{customdata[1]:,.0f}<extra></extra>" }
    }], layout({
      height: Math.max(320, 40 + c.labels.length * 22), margin: { l: 10, r: 10, t: 28, b: 10 },
      annotations: [
        { xref: "paper", yref: "paper", x: 0, y: 1.06, text: c.left, showarrow: false, xanchor: "left",
          font: { size: 12, color: "#616e7c" } },
        { xref: "paper", yref: "paper", x: 1, y: 1.06, text: c.right, showarrow: false, xanchor: "right",
          font: { size: 12, color: "#616e7c" } }
      ]
    }));
  }

  // The migration matrix: customers per from × to cell, revenue of both runs in the hover.
  function migration(id, c) {
    var text = c.customers.map(function (row) {
      return row.map(function (v) { return v === null ? "" : v.toLocaleString(); });
    });
    var hover = c.customers.map(function (row, i) {
      return row.map(function (v, j) {
        return [c.revenue_from[i][j] === null ? 0 : c.revenue_from[i][j], c.revenue_to[i][j] === null ? 0 : c.revenue_to[i][j]];
      });
    });
    plot(id, [{
      type: "heatmap", x: c.cols, y: c.rows, z: c.customers, text: text, texttemplate: "%{text}", customdata: hover,
      colorscale: [[0, "#f5f7fa"], [0.5, "#9fb3c8"], [1, "#243b53"]], showscale: false, xgap: 2, ygap: 2,
      hoverongaps: false,
      hovertemplate: "%{y} → %{x}<br>" + c.customers_name + ": %{z:,}<br>" + c.revenue_names[0] +
        ": %{customdata[0]:,.0f}<br>" + c.revenue_names[1] + ": %{customdata[1]:,.0f}<extra></extra>"
    }], layout({
      height: Math.max(260, 90 + c.rows.length * 34), margin: { l: 10, r: 10, t: 8, b: 60 },
      xaxis: { title: { text: c.x_axis }, type: "category", side: "bottom", automargin: true },
      yaxis: { title: { text: c.y_axis }, type: "category", automargin: true, autorange: "reversed" }
    }));
  }

  // Response rates per segment, contacted beside control, with their Wilson 95% intervals.
  function campaign(id, c) {
    plot(id, c.series.map(function (s) {
      return {
        type: "bar", name: s.name, x: c.labels, y: s.values, marker: { color: s.color },
        error_y: { type: "data", symmetric: false, array: s.plus, arrayminus: s.minus, color: "#616e7c", thickness: 1.2, width: 4 },
        customdata: s.ci.map(function (ci, i) { return [ci, s.n[i]]; }),
        hovertemplate: "%{x}<br>" + s.name + ": %{y:.1%}<br>" + c.ci_name + ": %{customdata[0]}<br>" + c.n_name +
          ": %{customdata[1]:,}<extra></extra>"
      };
    }), layout({
      barmode: "group", bargap: 0.3, height: 300, margin: { l: 10, r: 16, t: 30, b: 60 },
      xaxis: { type: "category", automargin: true },
      yaxis: { title: { text: c.y_axis }, tickformat: ".0%", rangemode: "tozero", gridcolor: "#e4e7eb", automargin: true }
    }));
  }

  var KINDS = {
    bars: bars, heatmap: heatmap, pareto: pareto, histogram: histogram, buckets: buckets, capture: capture,
    scatter: scatter, curve: curve, importance: importance, trend: trend, sankey: sankey, migration: migration,
    campaign: campaign
  };
  Object.keys(data.charts || {}).forEach(function (key) {
    var c = data.charts[key];
    var draw = KINDS[c.kind];
    if (!draw) { return; }
    try {
      draw("chart-" + key, escaped(c));  // the only markup in a chart is what the drawing code writes
    } catch (err) {
      var el = document.getElementById("chart-" + key);
      if (el) { el.setAttribute("data-chart-error", String(err && err.message || err)); }
    }
  });
  document.documentElement.setAttribute("data-charts-rendered", String(rendered.length));

  // Charts follow the page width, and paper is narrower than the screen.
  function resize() { rendered.forEach(function (el) { Plotly.Plots.resize(el); }); }
  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(resize, 150);
  });
  window.addEventListener("beforeprint", resize);
  if (window.matchMedia) {
    var mq = window.matchMedia("print");
    if (mq.addEventListener) { mq.addEventListener("change", resize); }
  }
})();

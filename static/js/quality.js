// The quality page's charts, drawn with the vendored uPlot (static/vendor/uplot) from the
// figures the server put in #quality-data. Each chart's table stays in the page: it is open
// until its chart is drawn, so without script (or without uPlot) the figures are still there.

// Okabe-Ito: told apart with the common colour-vision deficiencies.
const COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];
const HEIGHT = 220;

function valueFormat(unit) {
  if (unit === "share") return (v) => (v == null ? "—" : `${(v * 100).toFixed(1)}%`);
  if (unit === "seconds") return (v) => (v == null ? "—" : `${v.toFixed(2)} s`);
  return (v) => (v == null ? "—" : String(v));
}

// One colour per configuration on every chart (its p95 dashed); "All" in grey; other series
// (feedback categories) take the palette in order.
function colourFor(label, i, configurations) {
  if (label === "All") return "#6b7280";
  const c = configurations.findIndex((name) => label === name || label.startsWith(`${name} · `));
  return COLOURS[(c >= 0 ? c : i) % COLOURS.length];
}

function seriesOptions(chart, configurations) {
  const format = valueFormat(chart.unit);
  return chart.series.map((s, i) => ({
    label: s.label,
    stroke: colourFor(s.label, i, configurations),
    width: 2,
    dash: s.label.endsWith("p95") ? [6, 4] : undefined,
    points: { show: true, size: 5 },
    value: (_u, v) => format(v),
  }));
}

function draw(figure, chart, xs, configurations) {
  const target = figure.querySelector(".chart-canvas");
  if (!target || !chart.series.length) return;
  const format = valueFormat(chart.unit);
  const options = {
    width: Math.max(280, target.clientWidth),
    height: HEIGHT,
    // Days are calendar dates: show them as dates whatever the browser's time zone.
    tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { y: { range: chart.unit === "share" ? [0, 1] : (_u, _min, max) => [0, Math.max(1, max)] } },
    axes: [{}, { values: (_u, ticks) => ticks.map(format), size: 60 }],
    series: [{ label: "Day", value: (_u, ts) => (ts == null ? "—" : new Date(ts * 1000).toISOString().slice(0, 10)) },
      ...seriesOptions(chart, configurations)],
  };
  const plot = new window.uPlot(options, [xs, ...chart.series.map((s) => s.values)], target);
  new ResizeObserver(() => plot.setSize({ width: Math.max(280, target.clientWidth), height: HEIGHT }))
    .observe(target);
  const table = figure.querySelector("details.chart-table");
  if (table) table.open = false;
  figure.dataset.drawn = "true";
}

function main() {
  const source = document.getElementById("quality-data");
  if (!source || typeof window.uPlot !== "function") return;
  const data = JSON.parse(source.textContent);
  const xs = data.days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  for (const chart of data.charts) {
    const figure = document.querySelector(`figure[data-chart="${chart.key}"]`);
    if (figure) draw(figure, chart, xs, data.configurations);
  }
}

main();

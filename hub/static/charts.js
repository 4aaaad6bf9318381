// SVG charts drawn in the page: no library, no CDN. Labels are text nodes (svg() → textContent).
import { formatPercent, svg } from "/static/common.js";

// Horizontal bars, one per row: [{label, value (0..1)}] → <svg>.
export function coverageBars(rows, title) {
  const row = 22, labelW = 150, barW = 360, width = labelW + barW + 60;
  const height = rows.length * row + 24;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title },
    svg("title", {}, title));
  for (const [x, text] of [[labelW, "0%"], [labelW + barW / 2, "50%"], [labelW + barW, "100%"]]) {
    chart.append(svg("text", { x, y: 12, "text-anchor": "middle" }, text));
  }
  rows.forEach((item, i) => {
    const y = 20 + i * row;
    const value = Math.max(0, Math.min(1, item.value || 0));
    chart.append(
      svg("text", { x: labelW - 6, y: y + 14, "text-anchor": "end" }, item.label),
      svg("rect", { class: "track", x: labelW, y: y + 3, width: barW, height: row - 8, rx: 3 }),
      svg("rect", { class: "bar", x: labelW, y: y + 3, width: (barW * value).toFixed(1), height: row - 8, rx: 3,
        "data-label": item.label, "data-value": value },
      svg("title", {}, `${item.label}: ${formatPercent(value)}`)),
      svg("text", { x: labelW + barW + 6, y: y + 14 }, formatPercent(value)));
  });
  return chart;
}

export const HEAT_COLORS = {
  hadir: "#1b998b", terlambat: "#e2a400", sebagian: "#60a5fa", "tidak hadir": "#c2410c",
  libur: "#d8dce3", belum: "#ffffff",
};

// A month calendar, Monday-first weeks: days = [{date: "YYYY-MM-DD", status, coverage} | null].
export function calendarHeatmap(month, days, title) {
  const [year, monthNumber] = month.split("-").map(Number);
  const first = new Date(Date.UTC(year, monthNumber - 1, 1));
  const offset = (first.getUTCDay() + 6) % 7; // Monday = 0
  const cell = 40, gap = 4, top = 18;
  const weeks = Math.ceil((offset + days.length) / 7);
  const chart = svg("svg", { class: "chart heatmap", viewBox: `0 0 ${7 * (cell + gap)} ${top + weeks * (cell + gap)}`,
    role: "img", "aria-label": title }, svg("title", {}, title));
  ["Sen", "Sel", "Rab", "Kam", "Jum", "Sab", "Min"].forEach((name, i) => {
    chart.append(svg("text", { x: i * (cell + gap) + cell / 2, y: 12, "text-anchor": "middle" }, name));
  });
  days.forEach((day, index) => {
    const slot = offset + index;
    const x = (slot % 7) * (cell + gap), y = top + Math.floor(slot / 7) * (cell + gap);
    const date = `${month}-${String(index + 1).padStart(2, "0")}`;
    const status = day ? day.status : "belum";
    const label = day ? `${date}: ${status}${day.status !== "libur" && day.status !== "belum" ? `, cakupan ${formatPercent(day.coverage)}` : ""}`
      : `${date}: belum ada data`;
    chart.append(svg("g", { "data-date": date, "data-status": status },
      svg("rect", { x, y, width: cell, height: cell, rx: 4, fill: HEAT_COLORS[status] || "#fff", stroke: "#c5cad3" }),
      svg("text", { x: x + 5, y: y + 14 }, String(index + 1)),
      svg("title", {}, label)));
  });
  return chart;
}

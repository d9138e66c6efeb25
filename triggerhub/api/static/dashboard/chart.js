// A small line chart on a canvas: one point per second per series, the last WINDOW seconds.
// Drawn at most once per animation frame; the canvas carries its latest values in data-last
// (JSON), each series' sum over every sample in data-totals (JSON) and its point count in
// data-samples, for people and tests alike.

const WINDOW = 60;
const COLOURS = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#4e342e", "#ad1457"];
const MAX_SERIES = COLOURS.length;

export class LineChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.series = new Map();  // name -> array of numbers, oldest first
    this.samples = 0;
    this.totals = {};
    this.pending = false;
  }

  // values: {seriesName: number}; a series missing from a sample gets 0.
  push(values) {
    for (const name of Object.keys(values)) {
      if (!this.series.has(name) && this.series.size < MAX_SERIES) {
        this.series.set(name, new Array(this.samples).fill(0));
      }
    }
    for (const [name, points] of this.series) {
      points.push(values[name] ?? 0);
      if (points.length > WINDOW) points.shift();
    }
    this.samples += 1;
    for (const [name, v] of Object.entries(values)) this.totals[name] = (this.totals[name] ?? 0) + v;
    this.canvas.dataset.totals = JSON.stringify(this.totals);
    this.canvas.dataset.samples = String(this.samples);
    this.canvas.dataset.last = JSON.stringify(values);
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.draw(); });
    }
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const { width, height } = this.canvas;
    const pad = 24;
    ctx.clearRect(0, 0, width, height);
    let max = 1;
    for (const points of this.series.values()) for (const v of points) max = Math.max(max, v);
    ctx.strokeStyle = "#ccc";
    ctx.fillStyle = "#555";
    ctx.font = "10px sans-serif";
    ctx.beginPath();
    ctx.moveTo(pad, 4); ctx.lineTo(pad, height - pad); ctx.lineTo(width - 4, height - pad);
    ctx.stroke();
    ctx.fillText(String(Math.round(max)), 2, 12);
    ctx.fillText("0", 2, height - pad);
    const step = (width - pad - 4) / (WINDOW - 1);
    let legendX = pad + 4;
    let i = 0;
    for (const [name, points] of this.series) {
      const colour = COLOURS[i++ % COLOURS.length];
      ctx.strokeStyle = colour;
      ctx.beginPath();
      const offset = WINDOW - points.length;
      points.forEach((v, k) => {
        const x = pad + (offset + k) * step;
        const y = height - pad - (v / max) * (height - pad - 8);
        if (k === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
      ctx.fillStyle = colour;
      const label = `${name} ${points[points.length - 1] ?? 0}`;
      ctx.fillText(label, legendX, height - 6);
      legendX += ctx.measureText(label).width + 10;
    }
  }
}

// A two-panel bar chart (throughput, and p50/p95/p99 latency, per configuration) as plain SVG: a few rectangles
// and labels, which is less code than adapting a charting library to render without a browser.
export interface ChartRow { name: string, rps: number, p50: number, p95: number, p99: number }

const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

export function chartSvg (rows: ChartRow[], title: string): string {
  const width = 960
  const panel = 440
  const top = 60
  const barArea = 220
  const colors = ['#8c8c8c', '#2f7ed8', '#7fb2e8', '#0d9c6b', '#e0a800']
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${top + barArea + 110}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escape(title)}</text>`
  ]
  const axis = (x: number, label: string): void => {
    out.push(`<line x1="${x}" y1="${top + barArea}" x2="${x + panel - 20}" y2="${top + barArea}" stroke="#333"/>`)
    out.push(`<text x="${x + (panel - 20) / 2}" y="${top - 12}" text-anchor="middle" font-weight="bold">${escape(label)}</text>`)
  }
  // Throughput.
  const maxRps = Math.max(...rows.map((r) => r.rps), 1)
  axis(30, 'Throughput (req/s, higher is better)')
  const slot = (panel - 40) / rows.length
  rows.forEach((r, i) => {
    const h = (r.rps / maxRps) * barArea
    const x = 40 + i * slot
    out.push(`<rect x="${x}" y="${top + barArea - h}" width="${slot * 0.6}" height="${h}" fill="${colors[i % colors.length]}"/>`)
    out.push(`<text x="${x + slot * 0.3}" y="${top + barArea - h - 4}" text-anchor="middle">${Math.round(r.rps)}</text>`)
    out.push(`<text x="${x + slot * 0.3}" y="${top + barArea + 16}" text-anchor="middle">${escape(r.name)}</text>`)
  })
  // Latency: p50, p95, p99 per configuration.
  const maxLatency = Math.max(...rows.map((r) => r.p99), 1)
  const x0 = 40 + panel
  axis(x0 - 10, 'Latency (ms: p50, p95, p99; lower is better)')
  rows.forEach((r, i) => {
    const x = x0 + i * slot
    ;[r.p50, r.p95, r.p99].forEach((v, j) => {
      const h = (v / maxLatency) * barArea
      out.push(`<rect x="${x + j * slot * 0.22}" y="${top + barArea - h}" width="${slot * 0.2}" height="${h}" fill="${colors[i % colors.length]}" fill-opacity="${1 - j * 0.3}"/>`)
      out.push(`<text x="${x + j * slot * 0.22 + slot * 0.1}" y="${top + barArea - h - 4}" text-anchor="middle" font-size="10">${v}</text>`)
    })
    out.push(`<text x="${x + slot * 0.33}" y="${top + barArea + 16}" text-anchor="middle">${escape(r.name)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n')
}

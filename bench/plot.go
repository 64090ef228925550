package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WritePlot draws the report's time series into path (.svg or .png): on
// top, each scenario's p50 and p99 latency per interval; below, its
// throughput. The x axis is seconds since the scenario's measured phase
// began, so scenarios run one after another share it.
func (r *Report) WritePlot(path string) error {
	lat := plot.New()
	lat.Title.Text = "latency per interval"
	lat.X.Label.Text = "s"
	lat.Y.Label.Text = "ms"
	tput := plot.New()
	tput.Title.Text = "throughput per interval"
	tput.X.Label.Text = "s"
	tput.Y.Label.Text = "ops/s"
	var latLines, tputLines []any
	for _, s := range r.Scenarios {
		if len(s.Series) == 0 {
			continue
		}
		p50, p99, ops := make(plotter.XYs, len(s.Series)), make(plotter.XYs, len(s.Series)), make(plotter.XYs, len(s.Series))
		for i, p := range s.Series {
			p50[i] = plotter.XY{X: p.At, Y: p.P50Ms}
			p99[i] = plotter.XY{X: p.At, Y: p.P99Ms}
			ops[i] = plotter.XY{X: p.At, Y: p.OpsPerSec}
		}
		latLines = append(latLines, s.Name+" p50", p50, s.Name+" p99", p99)
		tputLines = append(tputLines, s.Name, ops)
	}
	if err := plotutil.AddLines(lat, latLines...); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if err := plotutil.AddLines(tput, tputLines...); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	lat.Legend.Top = true
	tput.Legend.Top = true
	lat.Y.Min, tput.Y.Min = 0, 0

	w, h := 9*vg.Inch, 8*vg.Inch
	var canvas interface {
		vg.CanvasSizer
		io.WriterTo
	}
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".svg":
		canvas = vgsvg.New(w, h)
	case ".png":
		canvas = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	default:
		return fmt.Errorf("plot %s: want a .svg or .png file, got %q", path, ext)
	}
	dc := draw.New(canvas)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(6), PadY: vg.Points(12)}
	cs := plot.Align([][]*plot.Plot{{lat}, {tput}}, tiles, dc)
	lat.Draw(cs[0][0])
	tput.Draw(cs[1][0])

	f, err := os.CreateTemp(filepath.Dir(path), ".stockbench-plot-*")
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := canvas.WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return os.Rename(f.Name(), path)
}

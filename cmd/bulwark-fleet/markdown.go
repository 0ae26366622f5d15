package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// appendMarkdown appends a short human summary of a run to a Markdown file
// (--append-md): the command, the machine and the numbers that matter.
func appendMarkdown(path string, args []string, rep *report) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeMarkdown(f, args, rep)
}

func writeMarkdown(w io.Writer, args []string, rep *report) error {
	m := rep.Machine
	var b strings.Builder
	fmt.Fprintf(&b, "\n#### bulwark-fleet %s, %s\n\n", rep.Scenario, m.Started)
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %d GB, %s, kernel %s, load average at start %s.\n\n", m.CPUs, m.Model, m.MemGB, m.Go, m.Kernel, m.LoadAvg)
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if strings.ContainsAny(a, " '\"") {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	fmt.Fprintf(&b, "```sh\nbulwark-fleet %s\n```\n\n", strings.Join(quoted, " "))
	fmt.Fprintf(&b, "| what | result |\n|---|---|\n")
	row := func(what, format string, a ...any) { fmt.Fprintf(&b, "| %s | %s |\n", what, fmt.Sprintf(format, a...)) }
	if cp, _, _ := strings.Cut(rep.ControlPlane, ":"); cp != "" {
		row("control plane", "%s", cp)
	}
	row("streams", "%v %v/%v over %v source services (%d services in the mesh)", rep.Config["streams"], rep.Config["protocol"], rep.Config["flavor"], rep.Config["sources"], rep.Services)
	warming := rep.Config["warming"] == true
	if warming {
		row("client", "Envoy model (test/envoymodel): converged = ACKed the new config and nothing warming; %v change", rep.Config["change"])
	}
	if rep.Error != "" {
		row("error", "%s", rep.Error)
	}
	if w := rep.Warmup; w != nil {
		row("fleet warm (every stream ACKed every type)", "%.2f s", w.FleetSeconds)
	}
	if mem := rep.Memory; mem != nil {
		row("memory per connected proxy", "%.1f KB heap, %.1f KB RSS, %.1f KB VmRSS (%d proxies added beyond one per group)",
			float64(mem.PerProxyHeapBytes)/1024, float64(mem.PerProxyRSSBytes)/1024, float64(mem.PerProxyVmRSSBytes)/1024, mem.ProxiesAdded)
		row("simulator per stream", "%.1f KB heap, %.1f KB VmRSS", float64(mem.SimPerStreamHeapBytes)/1024, float64(mem.SimPerStreamRSSBytes)/1024)
		row("control plane with the fleet", "%.0f MB heap, %.0f MB RSS, %d goroutines",
			mb(mem.Loaded.HeapInuseBytes), mb(mem.Loaded.RSSBytes), mem.Loaded.Goroutines)
	}
	if c := rep.Convergence; c != nil {
		converged, total := 0, 0
		for _, w := range rep.Writes {
			converged, total = converged+w.Converged, total+w.Total
		}
		what := "write → every stream ACKed"
		if warming {
			what = "write → every stream ACKed and warm"
		}
		row(what, "p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms (%d writes, %d/%d stream convergences)",
			c.P50Ms, c.P90Ms, c.P99Ms, c.MaxMs, len(rep.Writes), converged, total)
		if warming {
			row("warmed by timeout / NACKs", "%d / %d", rep.WarmedByTimeout, rep.NACKs)
		}
	}
	if s := rep.Storm; s != nil {
		row("restart → ready", "%.2f s", s.RestartSeconds)
		row("restart → every stream ACKed again", "%.2f s (%d/%d; per stream p50 %.0f ms, p99 %.0f ms)", s.AllAckedSeconds, s.Reacked, s.Total, s.ReackedMs.P50Ms, s.ReackedMs.P99Ms)
		row("memory before / peak / after", "heap %.0f / %.0f / %.0f MB, RSS %.0f / %.0f / %.0f MB",
			mb(s.Before.HeapInuseBytes), mb(s.Peak.HeapInuseBytes), mb(s.After.HeapInuseBytes), mb(s.Before.RSSBytes), mb(s.Peak.RSSBytes), mb(s.After.RSSBytes))
	}
	if c := rep.Churn; c != nil {
		row("writes", "%d in %.0f s (%.1f/s; %d failed, %d not issued) over %d policies, %d writers", c.Writes, c.Seconds, c.RatePerSecond, c.Failed, c.Skipped, c.Targets, c.Writers)
		row("control plane CPU", "%.2f cores", c.CPUCores)
		row("coalescing", "%d builds, %d snapshots changed, %.2f pushes per proxy per second", c.Builds, c.SnapshotsChanged, c.PushesPerProxyPerSecond)
		row("convergence during the churn (control plane's histogram)", "p50 %.0f ms, p99 %.0f ms", c.ControlPlaneConvergence.P50Ms, c.ControlPlaneConvergence.P99Ms)
		row("a write after the churn", "p99 %.0f ms, %d/%d converged", c.Final.P99Ms, c.Final.Converged, c.Final.Total)
		row("heap baseline → after quiet", "live %.1f → %.1f MB (ratio %.2f); in use %.1f → %.1f MB (ratio %.2f)",
			mb(c.Baseline.HeapAllocBytes), mb(c.After.HeapAllocBytes), c.LiveHeapRatio, mb(c.Baseline.HeapInuseBytes), mb(c.After.HeapInuseBytes), c.HeapRatio)
		row("goroutines baseline → after quiet", "%d → %d", c.Baseline.Goroutines, c.After.Goroutines)
	}
	if a := rep.Abuse; a != nil {
		row("abuse during the writes", "%d/%d garbage type URLs, %d/%d node.cluster values over %d streams in %.1f s; stream errors %v",
			a.TypesSent, a.Types, a.ClustersSent, a.Clusters, a.Streams, a.Seconds, a.Errors)
	}
	if c := rep.Cold; c != nil {
		row("start → ready", "%.2f s with %d services in etcd", c.ReadySeconds, c.Services)
		if c.WarmSeconds > 0 {
			row("start → fleet warm", "%.2f s", c.WarmSeconds)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// Package ui is dagq's operator console: a web dashboard served by the dagq
// binary itself (dagq ui, dagq run --ui), as an http.Handler.
//
// Pages are rendered on the server with html/template; one small embedded
// JavaScript file (no framework, no build step) refreshes them, and one CSS
// file styles them. Nothing is loaded from elsewhere: the assets are
// embedded with go:embed, and the Content-Security-Policy allows only the
// server's own scripts and styles (no inline script at all).
//
// # Pages
//
//   - Runs: the runs of the run index (Options.ListRuns, by default the
//     Runtime's dag.Launcher.ListRuns; with Options.NoIndex the runs opened
//     or driven through this console), with filters (state, job, age),
//     paging and live refresh.
//   - A run: its DAG drawn as SVG on the server (a layered layout, one column
//     per longest-path depth), coloured by step state; the steps table
//     (state, attempts, worker, start, duration, error, output preview,
//     reused steps marked); the timeline; Terminate; a re-execution's
//     lineage (links to its parent and root runs) and, once a launched run
//     has finished, Re-execute from failure (when it did not succeed) and
//     Re-execute all (dag.Launcher.Reexecute), which open the new run. The
//     page polls a small JSON endpoint
//     (/api/runs/{id}) every ui.refresh and recolours nodes and rows in
//     place; it stops when the run is finished and pauses while the tab is
//     hidden.
//   - Queues: the depth of the task and run queues and their dead-letter
//     queues over the last minutes (a small chart), and the dead letters,
//     with redrive.
//   - Workers: the worker registry's list (Options.Workers, by default the
//     Runtime's app.Runtime.Workers; with Options.NoIndex the workers seen
//     in the runs the console knows).
//
// # Cost
//
// Reads are shared by every viewer: the server keeps each run's record for
// three quarters of ui.refresh, so any number of tabs on one unfinished run
// cost one run record read (Launcher.Record: one S3 GET) per refresh, plus a
// heartbeat check (Launcher.Health) every 30 seconds. A finished run is read
// once more for its outputs (the run task's result) and then never again.
// Queue depths are sampled every 60 seconds in the background (one
// GetQueueAttributes per queue and DLQ) and every 5 × ui.refresh while a
// queues page is open.
//
// # Security
//
// See docs/dashboard.md: a loopback address by default; a non-loopback bind
// needs a token or basic auth (New refuses without, unless Insecure); every
// action is a POST carrying the per-process CSRF token, with its Origin
// checked; ReadOnly refuses every action; everything from tasks is escaped
// by html/template or set as text by the script; no secret is rendered.
package ui

// Package dag runs jobs — DAGs of steps — on dagq's task queue (package
// core).
//
// A Job names its steps, the task each runs, their arguments and upstream
// steps. An Executor runs a job from the calling process: it submits every
// step whose upstreams succeeded through a core.Client, passes upstream
// outputs to downstream inputs (core.Input), retries steps per policy, skips
// the downstream of a failed step, and on interrupt or failure cancels every
// step in flight before it returns.
//
// A Launcher runs a whole run as one task on a worker instead (the run task,
// RegisterRunTask): Launch returns at once with the run's ID, Status and
// Wait read the run record the run task keeps in the StateStore
// (core.Ports.State), Terminate cancels the run, and Health answers from the
// run's heartbeat, so a dead worker is detected and another worker takes the
// run over. Reexecute launches a new run of a finished run's job (stored
// with the run) that runs some steps again and reuses the stored results of
// the others (RunOptions.Reuse), recording the lineage.
//
// The package uses core's public API only, plus two documented hooks on
// core.Client: Tracer (to trace runs in the submissions' traces) and
// StoredResults (to resume a run from what its steps left, and to reuse
// the results of another run's steps).
package dag

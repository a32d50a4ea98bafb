package core

import "time"

// WorkerObserver receives the events of a Worker, for metrics
// (WorkerOptions.Observer; app/cli/metrics implements it for Prometheus).
//
// The worker calls its methods from its own goroutines, never while holding
// its locks, so an implementation may take locks of its own; it must be safe
// for concurrent use, cheap and non-blocking (it runs on the task's path),
// and must not call back into the worker. An implementation that embeds
// NopWorkerObserver keeps compiling when methods are added.
type WorkerObserver interface {
	// MessagesReceived reports n deliveries of one Receive; each holds a
	// worker slot until MessageDone.
	MessagesReceived(n int)
	// MessageDone reports that a delivery left the worker (acked, handed
	// back, or abandoned with its lease) and freed its slot.
	MessageDone()
	// MessageRejected reports a delivery that is never executed: not an
	// envelope, a field over its limit, a newer envelope version given up
	// on, a missing claim-check object, a bad signature. It is recorded as
	// failed and acked — or, when its message ID is too long to hold a
	// result, handed back for the queue's dead-letter queue, and then each
	// of its deliveries is reported. It has no TaskReceived.
	MessageRejected()
	// MessageHandedBack reports a delivery whose handler never ran handed
	// back to the queue (shutdown began before it started, or it was not
	// due yet: OutcomeDelayed):
	// requeued (ports.Requeuer: a new message, no attempt counted) or, where
	// the broker cannot requeue (a FIFO queue) or the requeue failed,
	// released with Nack 0, whose next delivery counts one more receive,
	// and so one more attempt.
	MessageHandedBack(requeued bool)

	// TaskReceived reports a delivery decoded into a task, before the
	// checks that precede its start. Every TaskReceived is followed by one
	// TaskFinished.
	TaskReceived(t TaskInfo)
	// TaskStarted reports that the task's handler is about to run.
	TaskStarted(t TaskInfo)
	// TaskFinished reports what became of a received task.
	TaskFinished(t TaskInfo, r TaskResult)

	// LeasesExtended reports one lease extension call: extended leases were
	// renewed, failed ones were not (the call or their item failed, or the
	// lease was found lost).
	LeasesExtended(extended, failed int)
	// CancelRequested reports n task IDs received from the cancel
	// subscription (requests seen, whether or not their tasks run here).
	CancelRequested(n int)

	// ReceiveFailed reports a Receive call that failed (other than by the
	// broker closing or the worker stopping); the worker backs off and
	// tries again.
	ReceiveFailed()
	// ResultStoreFailed reports a result that could not be stored, after
	// the worker's retries; its delivery is handed back so that the task is
	// redelivered, and its outcome stays the handler's.
	ResultStoreFailed()
	// CompletionPublishFailed reports a completion that could not be pushed
	// to its ReplyTo inbox (an inbox that is gone is not a failure); the
	// result is stored, and a waiter finds it in the result backend.
	CompletionPublishFailed()
	// DeadLettered reports a failed result recorded for a task found in the
	// queue's dead-letter queue without one (WorkerOptions.DeadLetterSweep).
	DeadLettered()

	// PoolWaited reports a task of pool postponed because the pool had no
	// slot for it (WorkerOptions.Pools); its TaskFinished has outcome
	// OutcomePostponed.
	PoolWaited(pool string)
	// PoolAcquired reports a slot of pool taken by a task about to start;
	// waited is how long the task waited for it (0 when it did not).
	PoolAcquired(pool string, waited time.Duration)
	// PoolReleased reports a slot of pool given up once its task's outcome
	// was recorded; lost reports a slot whose lease could not be renewed
	// (the task's handler was cancelled with ErrPoolSlotLost).
	PoolReleased(pool string, lost bool)
}

// TaskInfo names the task of an observed event.
type TaskInfo struct {
	ID      string
	Name    string // the registered task name the envelope names
	RunID   string
	StepID  string
	Attempt int
}

// TaskOutcome is what became of a received task (TaskResult.Outcome).
type TaskOutcome int

// Task outcomes.
const (
	// OutcomeSucceeded: the handler succeeded.
	OutcomeSucceeded TaskOutcome = iota + 1
	// OutcomeFailed: a final failure was recorded, by the handler or before
	// its start (deadline passed, unknown task, attempts exhausted).
	OutcomeFailed
	// OutcomeRetried: the handler failed and the task was handed back for
	// another attempt.
	OutcomeRetried
	// OutcomeCancelled: cancelled by request, before or while running.
	OutcomeCancelled
	// OutcomeLeaseLost: the lease was lost; nothing was recorded, another
	// delivery owns the task.
	OutcomeLeaseLost
	// OutcomeReleased: interrupted or released by shutdown, for another
	// worker.
	OutcomeReleased
	// OutcomeDuplicate: a redelivered task that already had a result; its
	// handler did not run again.
	OutcomeDuplicate
	// OutcomeDelayed: the task was received before its due time and sent on
	// as a new message, delayed by the rest of its wait (at most
	// WorkerOptions.MaxDelay); no attempt counted. A task due hours ahead is
	// received, and so counted, once per MaxDelay.
	OutcomeDelayed
	// OutcomePostponed: the task was handed back to run later, without
	// counting an attempt: its pool had no slot for it (PoolWaited).
	OutcomePostponed
)

var outcomeNames = [...]string{"", "succeeded", "failed", "retried", "cancelled", "lease_lost", "released", "duplicate", "delayed",
	"postponed"}

// String returns the outcome's lower-case name ("succeeded", "lease_lost").
func (o TaskOutcome) String() string {
	if o > 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// TaskResult is the outcome of an observed task.
type TaskResult struct {
	Outcome TaskOutcome
	// Ran reports whether the handler ran (a TaskStarted preceded); then
	// Duration is its run time.
	Ran      bool
	Duration time.Duration
}

// NopWorkerObserver is a WorkerObserver that ignores every event. Embed it
// in an observer to implement only some methods.
type NopWorkerObserver struct{}

var _ WorkerObserver = NopWorkerObserver{}

func (NopWorkerObserver) MessagesReceived(int)               {}
func (NopWorkerObserver) MessageDone()                       {}
func (NopWorkerObserver) MessageRejected()                   {}
func (NopWorkerObserver) MessageHandedBack(bool)             {}
func (NopWorkerObserver) TaskReceived(TaskInfo)              {}
func (NopWorkerObserver) TaskStarted(TaskInfo)               {}
func (NopWorkerObserver) TaskFinished(TaskInfo, TaskResult)  {}
func (NopWorkerObserver) LeasesExtended(int, int)            {}
func (NopWorkerObserver) CancelRequested(int)                {}
func (NopWorkerObserver) ReceiveFailed()                     {}
func (NopWorkerObserver) ResultStoreFailed()                 {}
func (NopWorkerObserver) CompletionPublishFailed()           {}
func (NopWorkerObserver) DeadLettered()                      {}
func (NopWorkerObserver) PoolWaited(string)                  {}
func (NopWorkerObserver) PoolAcquired(string, time.Duration) {}
func (NopWorkerObserver) PoolReleased(string, bool)          {}

// taskInfo returns the observed identity of j's task.
func (j *workerJob) taskInfo() TaskInfo {
	return TaskInfo{ID: j.env.TaskID, Name: j.env.Task, RunID: j.env.RunID, StepID: j.env.StepID, Attempt: j.attempt}
}

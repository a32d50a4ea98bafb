package core

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"time"

	"github.com/dagq/dagq/ports"
)

// leaseState is where a held delivery is in its life.
type leaseState int

const (
	// leasePending: received, checks before the start are running.
	leasePending leaseState = iota
	// leaseRunning: the handler runs.
	leaseRunning
	// leaseFinishing: the outcome is being recorded; shutdown waits for it.
	leaseFinishing
)

// workerLease is the worker's view of one delivery it holds. Its fields are
// guarded by Worker.mu.
type workerLease struct {
	receipt ports.Receipt
	msgID   string       // the broker's message ID
	taskID  string       // set once decoded
	payload string       // claim-check key, deleted after the ack; set before the task goroutine starts
	log     *slog.Logger // the task's logger once decoded, or built on demand (leaseLogLocked)
	cancel  context.CancelCauseFunc
	// orig is the delivery as received (a claim-check body not yet
	// resolved), what handBack puts back on the queue while the handler has
	// not started; cleared when it starts or the lease starts finishing.
	orig ports.Delivery

	// expires is the worker's estimate of the lease's end: measured from
	// when the Receive returned (the broker starts a lease when it hands the
	// message over, however long the poll waited before), or from before the
	// Extend call that last set it. renewed is when it was last set. The
	// worker's expiry timer marks the lease lost once expires passes (see
	// Worker.armExpiryLocked).
	expires    time.Time
	renewed    time.Time
	extensions int
	capped     bool

	// What l holds, touched only by the goroutine that handles it: a slot
	// (from dispatch until it settles or is forgotten), a run token (while
	// its handler may run, with prefetch) and a settle token (from when it
	// starts settling until it is forgotten).
	slot, run, settling bool

	state    leaseState
	lost     bool // the lease ended; another delivery may own the message
	released bool // handed back at shutdown
	settled  bool // acked or nacked: no more heartbeats
	done     bool // forgotten by the worker
}

// dispatch registers the deliveries of one Receive (so that heartbeats and
// shutdown see them at once) and hands them to a goroutine.
func (w *Worker) dispatch(ds []ports.Delivery, received time.Time) {
	ls := make([]*workerLease, len(ds))
	block := make([]workerLease, len(ds)) // one allocation for the batch
	expires := received.Add(w.lease)
	w.mu.Lock()
	for i, d := range ds {
		l := &block[i]
		*l = workerLease{
			receipt: d.Receipt,
			msgID:   d.ID,
			orig:    d,
			state:   leasePending,
			expires: expires,
			renewed: received,
			slot:    true,
		}
		w.held[l] = struct{}{}
		ls[i] = l
	}
	w.armExpiryLocked(expires)
	w.mu.Unlock()
	w.obs.MessagesReceived(len(ds))
	// With prefetch, batches take their run tokens in the order received:
	// each waits for the one before it (see processBatch).
	var prev, turn chan struct{}
	if w.runSem != nil {
		prev, turn = w.startTurn, make(chan struct{})
		w.startTurn = turn
	}
	w.spawn(func() { w.processBatch(ds, ls, prev, turn) })
}

// forget drops a delivery from the worker's books and frees its slot.
func (w *Worker) forget(l *workerLease) {
	w.mu.Lock()
	l.done = true
	delete(w.held, l)
	cancel := l.cancel
	w.mu.Unlock()
	if cancel != nil {
		cancel(nil)
	}
	w.obs.MessageDone()
	w.freeSlot(l)
	if l.settling {
		l.settling = false
		<-w.settleSem
	}
}

// freeSlot gives back l's slot and run token, if it holds them.
func (w *Worker) freeSlot(l *workerLease) {
	if l.run {
		l.run = false
		<-w.runSem
	}
	if l.slot {
		l.slot = false
		w.slots.release(1)
	}
}

// beginSettle moves l from its slot to the settlement pipeline: once there
// is room in the pipeline (until then l keeps its slot: back-pressure), its
// slot is freed for the next task while its outcome is recorded. Its lease
// is still extended until it is acked or nacked, and shutdown waits for it.
func (w *Worker) beginSettle(l *workerLease) {
	if l.settling {
		return
	}
	l.settling = true
	w.settleSem <- struct{}{}
	w.freeSlot(l)
}

// acquireRun waits, with prefetch, for a run token for j: its checks and
// its handler then run at once. Prefetched tasks wait in the order they were
// received. It returns false when shutdown began first (or its drain was
// aborted): the caller releases the task (releasePrefetched).
func (w *Worker) acquireRun(j *workerJob) bool {
	if w.runSem == nil {
		return true
	}
	select {
	case <-w.stopping:
		return false
	default:
	}
	select {
	case w.runSem <- struct{}{}:
		j.l.run = true
		return true
	case <-w.stopping:
		return false
	case <-w.abortCtx.Done(): // the drain after a closed broker timed out
		return false
	}
}

// releasePrefetched hands a prefetched task that never started back to the
// queue at once (handBack: requeued where the broker can): shutdown began
// before it got a slot. It was not an attempt.
func (w *Worker) releasePrefetched(j *workerJob) {
	info := j.taskInfo()
	w.obs.TaskReceived(info)
	j.result.Outcome = OutcomeReleased
	defer func() { w.obs.TaskFinished(info, j.result) }()
	w.mu.Lock()
	release := !j.l.released && !j.l.lost && j.l.state != leaseFinishing
	var d ports.Delivery
	if release {
		j.l.released = true
		d = j.l.orig
	}
	w.mu.Unlock()
	if release {
		j.log.Info("prefetched task not started: handed back at shutdown")
		w.settle(j.l)
		w.handBack(d, j.log)
	}
}

// leaseLogLocked returns l's logger: the task's once decoded, otherwise one
// naming the message.
func (w *Worker) leaseLogLocked(l *workerLease) *slog.Logger {
	if l.log == nil {
		l.log = w.log.With("message_id", l.msgID)
	}
	return l.log
}

// armExpiryLocked makes sure the worker's expiry timer fires no later than
// at (the end of a lease just received or extended). One timer serves every
// lease: leases number at most Concurrency, and each firing scans them all.
func (w *Worker) armExpiryLocked(at time.Time) {
	if w.expiryTimer != nil && !w.expiryAt.IsZero() && !at.Before(w.expiryAt) {
		return // it fires earlier, and re-arms for the rest then
	}
	w.expiryAt = at
	d := time.Until(at)
	if w.expiryTimer == nil {
		w.expiryTimer = time.AfterFunc(d, w.leasesExpired)
		return
	}
	w.expiryTimer.Reset(d)
}

// leasesExpired runs when the earliest lease end may have passed: every
// lease whose conservative end passed without renewal is lost, and the
// timer is re-armed for the earliest remaining end.
func (w *Worker) leasesExpired() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	var next time.Time
	for l := range w.held {
		if l.done || l.settled || l.lost || l.released {
			continue
		}
		if !now.Before(l.expires) {
			w.loseLocked(l, "lease ran out")
			continue
		}
		if next.IsZero() || l.expires.Before(next) {
			next = l.expires
		}
	}
	w.expiryAt = time.Time{}
	if !next.IsZero() {
		w.armExpiryLocked(next)
	}
}

// loseLocked marks l lost and cancels its task with ports.ErrLeaseLost.
func (w *Worker) loseLocked(l *workerLease, why string) {
	l.lost = true
	if l.cancel != nil {
		l.cancel(ports.ErrLeaseLost)
	}
	if l.state != leaseFinishing {
		w.leaseLogLocked(l).Warn("lease lost; the task is left to another delivery",
			"reason", why, "extensions", l.extensions)
	}
}

// heartbeatLoop extends the leases of in-flight deliveries every heartbeat
// interval, until ctx is done.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(w.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.extendDue(ctx)
		}
	}
}

// extendDue extends every lease renewed at least half an interval ago, in
// batches of ports.MaxBatch receipts. A lease that reached MaxExtensions is
// left to run out.
func (w *Worker) extendDue(ctx context.Context) {
	now := time.Now()
	var due []*workerLease
	w.mu.Lock()
	for l := range w.held {
		if l.lost || l.released || l.settled || now.Sub(l.renewed) < w.heartbeat/2 ||
			!now.Before(l.expires) { // ran out: its expiry timer marks it lost
			continue
		}
		if l.extensions >= w.maxExtensions {
			if !l.capped {
				l.capped = true
				w.leaseLogLocked(l).Warn("lease extension cap reached; the lease is left to run out",
					"extensions", l.extensions, "expires", l.expires)
			}
			continue
		}
		due = append(due, l)
	}
	w.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].receipt < due[j].receipt })

	for len(due) > 0 && ctx.Err() == nil {
		chunk := due[:min(len(due), ports.MaxBatch)]
		due = due[len(chunk):]
		receipts := make([]ports.Receipt, len(chunk))
		for i, l := range chunk {
			receipts[i] = l.receipt
		}
		start := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, w.heartbeat)
		err := w.broker.Extend(callCtx, w.lease, receipts...)
		cancel()
		var be *ports.BatchError
		if err != nil && !errors.As(err, &be) {
			w.log.Warn("lease extension failed; retrying on the next heartbeat",
				"receipts", len(receipts), "err", err)
		}
		extended, failed := 0, 0
		w.mu.Lock()
		for i, l := range chunk {
			if l.done || l.settled || l.lost || l.released {
				continue
			}
			ierr := ports.ItemError(err, i)
			if ierr == nil {
				extended++
			} else {
				failed++
			}
			switch {
			case ierr == nil:
				l.extensions++
				l.renewed = start
				l.expires = start.Add(w.lease)
				w.armExpiryLocked(l.expires)
			case errors.Is(ierr, ports.ErrLeaseLost):
				w.loseLocked(l, ierr.Error())
			case be != nil:
				w.leaseLogLocked(l).Warn("lease extension failed; retrying on the next heartbeat", "err", ierr)
			}
		}
		w.mu.Unlock()
		if extended+failed > 0 {
			w.obs.LeasesExtended(extended, failed)
		}
	}
}

// cancelLoop receives cancellation requests until ctx is done, re-subscribing
// with backoff after errors. sub may be nil (subscribe first).
func (w *Worker) cancelLoop(ctx context.Context, sub ports.CancelSubscription) {
	defer func() {
		if sub != nil {
			_ = sub.Close()
		}
	}()
	failures := 0
	backoff := func(what string, err error) bool {
		failures++
		delay := loopBackoff.Backoff(failures)
		w.log.Error(what+" failed; backing off", "err", err, "failures", failures, "backoff", delay)
		return sleepCtx(ctx, delay)
	}
	for ctx.Err() == nil {
		if sub == nil {
			s, err := w.cancels.Subscribe(ctx)
			if err != nil {
				if ctx.Err() != nil || !backoff("cancel subscription", err) {
					return
				}
				continue
			}
			sub = s
		}
		ids, err := sub.Receive(ctx)
		if len(ids) > 0 {
			w.cancelRequested(ids)
			w.obs.CancelRequested(len(ids))
		}
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ports.ErrClosed) {
			_ = sub.Close()
			sub = nil
		}
		if !backoff("cancel receive", err) {
			return
		}
	}
}

// cancelRequested remembers the IDs and cancels their in-flight tasks.
func (w *Worker) cancelRequested(ids []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		w.recent.add(id)
	}
	// Scan the held deliveries (at most Concurrency) for the IDs.
	wanted := func(id string) bool { return slices.Contains(ids, id) }
	if len(ids) > 8 {
		set := make(map[string]struct{}, len(ids))
		for _, id := range ids {
			set[id] = struct{}{}
		}
		wanted = func(id string) bool { _, ok := set[id]; return ok }
	}
	for l := range w.held {
		if l.taskID == "" || l.cancel == nil || l.state == leaseFinishing || !wanted(l.taskID) {
			continue
		}
		l.cancel(ErrTaskCanceled)
		w.leaseLogLocked(l).Info("cancellation requested; cancelling the task")
	}
}

// recentSet is a bounded set of IDs that forgets the oldest first.
type recentSet struct {
	ids  map[string]struct{}
	ring []string
	next int
	max  int
}

func newRecentSet(max int) recentSet {
	return recentSet{ids: make(map[string]struct{}), max: max}
}

func (r *recentSet) has(id string) bool {
	_, ok := r.ids[id]
	return ok
}

func (r *recentSet) add(id string) {
	if r.has(id) {
		return
	}
	if len(r.ring) < r.max {
		r.ring = append(r.ring, id)
	} else {
		delete(r.ids, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % r.max
	}
	r.ids[id] = struct{}{}
}

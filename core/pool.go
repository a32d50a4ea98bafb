package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// Fleet-wide concurrency pools: a task that names a pool (Request.Pool,
// WithPool, a job step's pool) runs only while it holds one of the pool's
// slots, and the slots are records in the StateStore every worker shares
// (Ports.State), so the limit holds across every worker and every run. See
// PoolOptions for the design and docs/semantics.md ("Concurrency pools")
// for its guarantees, costs and failure modes.

// Pool defaults and limits (see PoolOptions).
const (
	// DefaultPoolLease is the default PoolOptions.Lease.
	DefaultPoolLease = 30 * time.Second
	// DefaultPoolPoll is the default PoolOptions.Poll.
	DefaultPoolPoll = time.Second
	// MaxPoolLimit is the largest limit of one pool.
	MaxPoolLimit = 1000
	// MinPoolLease is the shortest PoolOptions.Lease.
	MinPoolLease = 10 * time.Millisecond
)

// poolMaxPollFactor caps a waiting task's re-check delay at this many Polls
// (and at ports.MaxDelay).
const poolMaxPollFactor = 32

// poolListPages bounds the pages of wait tickets one check lists (1,000
// keys each): a waiter behind more is too far back to take a slot anyway.
const poolListPages = 5

// poolGCPerCheck bounds the expired wait tickets one check deletes.
const poolGCPerCheck = 10

// ErrPoolSlotLost is the cause (context.Cause) of a handler's context
// cancelled because its task lost its pool slot: the worker could not
// renew the slot's lease in time, so another task may hold the slot now.
// The attempt is retried like any failed attempt.
var ErrPoolSlotLost = errors.New("pool slot lost")

// MaxPoolNameLen is the longest pool name.
const MaxPoolNameLen = 63

// ValidatePoolName checks a pool name: 1 to MaxPoolNameLen bytes of
// [A-Za-z0-9_-]. The error wraps ports.ErrInvalidArgument.
func ValidatePoolName(name string) error {
	if name == "" || len(name) > MaxPoolNameLen {
		return fmt.Errorf("%w: pool name %q is %d bytes; pool names are 1 to %d bytes of A-Z, a-z, 0-9, '_' and '-'",
			ports.ErrInvalidArgument, name, len(name), MaxPoolNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: pool name %q has %q at byte %d; pool names use only A-Z, a-z, 0-9, '_' and '-'",
				ports.ErrInvalidArgument, name, c, i)
		}
	}
	return nil
}

// WithPool puts the task in the fleet-wide concurrency pool name (see
// Request.Pool and PoolOptions).
func WithPool(name string) RequestOption { return func(r *Request) { r.Pool = name } }

// PoolOptions configures fleet-wide concurrency pools (WorkerOptions.Pools):
// a task that names a pool (Request.Pool) runs only while it holds one of
// the pool's Limits[pool] slots, across every worker that shares the
// StateStore (Ports.State) — and so across every run.
//
// # Slots
//
// Slot i of pool p is the StateStore record "pools/<p>/slots/<i>", i from 0
// to the limit minus 1: the holder (worker and task) and the end of its
// lease, or free. Right before a task would start (after its cancellation,
// deduplication, deadline and attempt checks) the worker reads the slots in
// turn, from one picked by a hash of the task ID, and takes a free one — one
// that is missing (a create-only write), released or whose lease ended (a
// write conditional on the version it read). Of racing conditional writes
// exactly one wins, so a slot has one holder at a time. While the handler
// runs the worker renews the slot's lease every Lease/3 (a conditional
// write); after the task's outcome is recorded it frees the slot with a
// conditional write (never a delete, which could free another holder's
// slot). A worker that dies stops renewing: its slots are free again within
// Lease. A worker that cannot renew a slot before its lease ends (the store
// unreachable, another task took it) cancels the handler with cause
// ErrPoolSlotLost, and the attempt is retried like a failed one.
//
// # Waiting
//
// When it finds no slot the task does not hold a worker slot while it
// waits: it is postponed — handed back as a new message visible after a
// re-check delay (ports.Requeuer; its attempt is not counted) — and checks
// again when it is delivered again, on any worker. The delay is Poll for the
// waiters that are next or nearly (fewer older waiters than twice the
// limit: their place moves up while they wait) and grows with a waiter's
// place in the queue, doubling each time the number of older waiters
// doubles, up to 32 Polls (at most ports.MaxDelay, and never past the
// task's deadline).
//
// # Fairness
//
// A waiting task keeps a wait ticket, the record
// "pools/<p>/wait/<first wait>.<task ID>.<expiry>" (empty), which it
// rewrites at every re-check and deletes when it gets a slot (or ends
// otherwise); the time of its first wait travels with its message
// (attribute "dagq-pool-wait"). A ticket counts until its expiry: the
// re-check delay plus a grace of 2 Polls and a second. A task with k
// counting tickets older than its own (a task that has not waited: every
// counting ticket) takes a slot only when it sees more than k free slots,
// and leaves the first k to the older waiters — unless a slot has been free
// for longer than the grace: its older waiters did not come for it (their
// messages are held by a dead worker, say), and it goes to whoever comes.
// So a newer task never takes the slot an older waiter that keeps
// re-checking needs, and the oldest waiter takes the next slot that frees
// at its next re-check: no waiter is overtaken forever. The price is that a
// free slot waits for the oldest waiter's re-check (at most its re-check
// delay) instead of going to whichever task comes first.
//
// # Requests
//
// A task of a pool with a free slot and no waiters costs one KeyLister
// listing, one Get and one Put to take the slot, one Put per Lease/3 of its
// run time, and one Put to free it. Each re-check of a waiting task costs
// one listing, up to one Get per slot (none for a waiter with at least
// limit older waiters), one Put and one Delete (its ticket), and the
// postponement: on SQS a send, a delete, its share of a receive, and one
// result lookup when it is delivered again.
type PoolOptions struct {
	// Limits maps a pool name ([A-Za-z0-9_-], 1 to 63 bytes; see
	// ValidatePoolName) to its number of slots, 1 to MaxPoolLimit. Every
	// worker serving tasks of a pool must have the same limit for it (the
	// slots are numbered 0 to limit-1: a worker with a larger limit uses
	// more of them). A task whose pool has no limit here is failed, not
	// run: "pool "p" is not configured on worker …". Empty: no pools, and
	// every task of a pool fails so.
	Limits map[string]int
	// Lease is how long a slot stays held without being renewed: a worker
	// that dies frees its slots within Lease. Renewed every Lease/3.
	// Default DefaultPoolLease (30s); at least MinPoolLease, at most
	// ports.MaxLease.
	Lease time.Duration
	// Poll is the re-check delay of a waiting task that is next or nearly
	// (fewer than twice the limit waiters ahead of it), the base of the
	// longer delays of tasks further back. Default
	// DefaultPoolPoll (1s); more than 0, at most ports.MaxDelay.
	Poll time.Duration
}

// pools is a worker's view of its pools: the store, the limits, the timings.
type pools struct {
	state  ports.StateStore
	lister ports.KeyLister
	limits map[string]int
	lease  time.Duration
	poll   time.Duration
}

// newPools validates opts (with the worker's StateStore) and applies the
// defaults; nil when no pool is configured.
func newPools(opts PoolOptions, state ports.StateStore) (*pools, []error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: Pools."+format, append([]any{ports.ErrInvalidArgument}, args...)...))
	}
	switch {
	case opts.Lease == 0:
		opts.Lease = DefaultPoolLease
	case opts.Lease < MinPoolLease || opts.Lease > ports.MaxLease:
		bad("Lease is %v; it must be 0 (default %v) or between %v and %v", opts.Lease, DefaultPoolLease, MinPoolLease, ports.MaxLease)
	}
	switch {
	case opts.Poll == 0:
		opts.Poll = DefaultPoolPoll
	case opts.Poll < 0 || opts.Poll > ports.MaxDelay:
		bad("Poll is %v; it must be 0 (default %v) or between 1ns and %v", opts.Poll, DefaultPoolPoll, ports.MaxDelay)
	}
	for _, name := range slices.Sorted(maps.Keys(opts.Limits)) {
		if err := ValidatePoolName(name); err != nil {
			errs = append(errs, fmt.Errorf("Pools.Limits: %w", err))
			continue
		}
		if n := opts.Limits[name]; n < 1 || n > MaxPoolLimit {
			bad("Limits[%q] is %d; a pool's limit is 1 to %d slots", name, n, MaxPoolLimit)
		}
	}
	if len(opts.Limits) == 0 {
		return nil, errs
	}
	var lister ports.KeyLister
	if state == nil {
		bad("Limits are set but Ports.State is nil: pools keep their slots in the StateStore every worker shares; set Ports.State")
	} else if l, ok := state.(ports.KeyLister); !ok {
		bad("Limits are set but Ports.State (%T) cannot list keys (ports.KeyLister), which pools need to order their waiting tasks", state)
	} else {
		lister = l
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &pools{state: state, lister: lister, limits: maps.Clone(opts.Limits), lease: opts.Lease, poll: opts.Poll}, nil
}

// limit returns the limit of pool name, false when p has none (or p is nil).
func (p *pools) limit(name string) (int, bool) {
	if p == nil {
		return 0, false
	}
	n, ok := p.limits[name]
	return n, ok
}

// grace is how long past its re-check delay a waiter's ticket stays live,
// and how long a free slot stays left to older waiters: 2 Polls and a
// second (SQS delays a message by whole seconds, and a re-check takes a
// receive). An active waiter re-checks well within it; a ticket whose task
// does not (its message is held by a dead worker, or deleted) stops counting
// then, and a slot the older waiters did not take by then goes to whoever
// comes.
func (p *pools) grace() time.Duration { return 2*p.poll + time.Second }

// delay is the re-check delay of a waiter with rank older waiters in a pool
// of limit slots: Poll while fewer than 2 limits of waiters are ahead of it
// (by its next re-check it may be next: those ahead of it leave as slots
// free), then doubling as the waiters ahead double, up to poolMaxPollFactor
// Polls and ports.MaxDelay.
func (p *pools) delay(rank, limit int) time.Duration {
	factor := 1 << min(bits.Len(uint(rank/(2*limit))), bits.Len(poolMaxPollFactor)-1)
	return min(p.poll*time.Duration(factor), ports.MaxDelay)
}

// Keys of the pool records in the StateStore.
func poolSlotKey(pool string, i int) string { return "pools/" + pool + "/slots/" + strconv.Itoa(i) }
func poolWaitPrefix(pool string) string     { return "pools/" + pool + "/wait/" }

// poolOrder is a waiter's place in its pool's queue: its first wait
// (fixed-width Unix nanoseconds, so that byte order is time order), a dot
// and its task ID.
func poolOrder(since time.Time, taskID string) string {
	return fmt.Sprintf("%020d.%s", max(since.UnixNano(), 0), taskID)
}

// poolTicketKey is the key of a wait ticket: its order, a dot and its
// expiry in Unix milliseconds.
func poolTicketKey(pool string, since time.Time, taskID string, expiry time.Time) string {
	return poolWaitPrefix(pool) + poolOrder(since, taskID) + "." + strconv.FormatInt(expiry.UnixMilli(), 10)
}

// poolTicket is a parsed wait ticket key.
type poolTicket struct {
	key    string
	order  string // see poolOrder
	since  time.Time
	taskID string
	expiry time.Time
}

// parsePoolTicket parses a key listed under the pool's wait prefix.
func parsePoolTicket(prefix, key string) (poolTicket, bool) {
	name, ok := strings.CutPrefix(key, prefix)
	if !ok || len(name) < 24 || name[20] != '.' {
		return poolTicket{}, false
	}
	dot := strings.LastIndexByte(name, '.')
	if dot <= 21 {
		return poolTicket{}, false
	}
	since, err1 := strconv.ParseInt(name[:20], 10, 64)
	expiry, err2 := strconv.ParseInt(name[dot+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return poolTicket{}, false
	}
	return poolTicket{key: key, order: name[:dot], since: time.Unix(0, since), taskID: name[21:dot],
		expiry: time.UnixMilli(expiry)}, true
}

// poolSlotRecord is the data of a slot record: its holder and the end of
// the holder's lease, or (free) when it was freed.
type poolSlotRecord struct {
	Worker string    `json:"worker,omitempty"`
	Task   string    `json:"task,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	Until  time.Time `json:"until,omitzero"`
	Freed  time.Time `json:"freed,omitzero"`
}

// slotFree reports whether a slot record's data is free at now — released,
// or its holder's lease ended — and since when (zero: long ago). A record
// that does not decode counts as free long ago (written by no dagq worker:
// it would block the slot forever).
func slotFree(data []byte, now time.Time) (free bool, since time.Time) {
	var r poolSlotRecord
	if json.Unmarshal(data, &r) != nil {
		return true, time.Time{}
	}
	switch {
	case r.Task == "":
		return true, r.Freed
	case !now.Before(r.Until):
		return true, r.Until
	}
	return false, time.Time{}
}

// freedSlotData is the data of a slot freed at now.
func freedSlotData(now time.Time) []byte {
	data, _ := json.Marshal(poolSlotRecord{Freed: now}) // times only
	return data
}

// jobPool is what a task of a pool carries through runJob.
type jobPool struct {
	name    string
	wait    wire.PoolWait // from the delivery's PoolWaitAttribute
	hasWait bool
	// hold is the slot the task holds (nil: none).
	hold *poolHold
	// postponed: the task was handed back to wait; its ticket stays.
	postponed bool
}

// poolHold is a slot a task holds, renewed by renewPoolSlot until
// releasePoolSlot.
type poolHold struct {
	pool  string
	key   string
	limit int

	mu      sync.Mutex
	version string
	rec     poolSlotRecord
	lost    bool

	stop chan struct{} // closed by releasePoolSlot
	done chan struct{} // closed when renewPoolSlot returned
}

// poolBegin prepares j when its task names a pool: it reads the wait
// attribute of its delivery. runJob calls it first, and poolDone at its end.
func (w *Worker) poolBegin(j *workerJob) {
	if j.env.Pool == "" {
		return
	}
	jp := &jobPool{name: j.env.Pool}
	w.mu.Lock()
	v, ok := j.l.orig.Attributes[wire.PoolWaitAttribute]
	w.mu.Unlock()
	if ok {
		pw, err := wire.ParsePoolWait(v)
		if err != nil {
			j.log.Warn("ignoring an invalid pool wait attribute; the task waits as a new one", "err", err)
		} else {
			jp.wait, jp.hasWait = pw, true
		}
	}
	j.pool = jp
}

// poolDone ends j's part in its pool once runJob is done with it: it frees
// the slot j holds (after the outcome was recorded), or deletes the wait
// ticket of a task that waited and ended without a slot (cancelled, failed
// before its start, a duplicate). A task postponed again, or handed back
// (shutdown, a lost lease), keeps its ticket: it comes back.
func (w *Worker) poolDone(j *workerJob) {
	jp := j.pool
	if jp == nil {
		return
	}
	switch {
	case jp.hold != nil:
		w.releasePoolSlot(j, jp.hold)
	case jp.postponed || !jp.hasWait:
	case j.result.Outcome == OutcomeReleased || j.result.Outcome == OutcomeLeaseLost:
	case w.pools != nil:
		w.deleteTickets(j, []string{poolTicketKey(jp.name, jp.wait.Since, j.env.TaskID, jp.wait.Ticket)})
	}
}

// waitForPoolSlot takes a slot of the task's pool, or postpones the task
// while the pool has none for it (see PoolOptions). It reports whether the
// task must not start now.
func (w *Worker) waitForPoolSlot(j *workerJob) bool {
	jp := j.pool
	if jp == nil {
		return false
	}
	limit, ok := w.pools.limit(jp.name)
	if !ok {
		msg := fmt.Sprintf("pool %q is not configured on worker %s: add pools: {%s: N} to its configuration "+
			"(WorkerOptions.Pools.Limits) with the limit every worker uses", jp.name, w.id, jp.name)
		j.log.Error("the task's pool is not configured on this worker; failing it", "pool", jp.name)
		w.finishUnstarted(j, ports.StateFailed, msg)
		return true
	}
	p := w.pools
	now := time.Now()
	ctx, cancel := context.WithTimeout(j.cctx, p.lease)
	chk, err := w.checkPool(ctx, j, jp, limit, now)
	cancel()
	if chk.hold != nil {
		jp.hold = chk.hold
		go w.renewPoolSlot(j, chk.hold)
		// The task's tickets go: it waits no more.
		w.deleteTickets(j, chk.old)
		waited := time.Duration(0)
		if jp.hasWait {
			waited = max(now.Sub(jp.wait.Since), 0)
		}
		j.log.Debug("pool slot taken", "pool", jp.name, "slot", chk.hold.key, "waited", waited)
		w.obs.PoolAcquired(jp.name, waited)
		return false
	}
	if j.cctx.Err() != nil {
		return w.stopBeforeStart(j)
	}
	if err != nil {
		j.log.Warn("checking the pool's slots failed; the task waits and checks again", "pool", jp.name, "err", err)
	}
	delay := p.delay(chk.rank, limit)
	if !j.env.Deadline.IsZero() {
		// Back by the deadline, which then fails the task at once.
		delay = max(min(delay, time.Until(j.env.Deadline)+time.Millisecond), 0)
	}
	w.postponeForPool(j, jp, chk, delay)
	return true
}

// poolCheck is what checkPool found.
type poolCheck struct {
	hold  *poolHold
	rank  int       // live tickets older than the task's
	since time.Time // the task's first wait (now for a task that did not wait)
	// old are the task's earlier tickets, to delete once replaced;
	// expired are other tasks' expired tickets (at most poolGCPerCheck).
	old, expired []string
}

// checkPool lists the pool's wait tickets, ranks the task among the live
// ones, and, when it may, reads the slots and takes the first free one
// beyond those it leaves for older waiters.
func (w *Worker) checkPool(ctx context.Context, j *workerJob, jp *jobPool, limit int, now time.Time) (poolCheck, error) {
	p := w.pools
	id := j.env.TaskID
	chk := poolCheck{since: now}
	if jp.hasWait {
		chk.since = jp.wait.Since
		chk.old = append(chk.old, poolTicketKey(jp.name, jp.wait.Since, id, jp.wait.Ticket))
	}
	prefix := poolWaitPrefix(jp.name)
	var tickets []poolTicket
	after := ""
	for range poolListPages {
		keys, more, err := p.lister.ListKeys(ctx, prefix, after, ports.MaxListKeys)
		if err != nil {
			chk.rank = limit // unknown: wait as if behind a full pool
			return chk, fmt.Errorf("list the wait tickets: %w", err)
		}
		for _, k := range keys {
			if t, ok := parsePoolTicket(prefix, k); ok {
				tickets = append(tickets, t)
			}
		}
		if !more || len(keys) == 0 {
			break
		}
		after = keys[len(keys)-1]
	}
	// A task that waited but lost its attribute (a FIFO queue releases with
	// Nack, which keeps the original message) finds its place in its own
	// ticket.
	for _, t := range tickets {
		if t.taskID != id {
			continue
		}
		if !jp.hasWait && t.since.Before(chk.since) {
			chk.since = t.since
		}
		if !slices.Contains(chk.old, t.key) {
			chk.old = append(chk.old, t.key)
		}
	}
	own := poolOrder(chk.since, id)
	older := map[string]struct{}{}
	for _, t := range tickets {
		switch {
		case t.taskID == id:
		case !now.Before(t.expiry):
			if len(chk.expired) < poolGCPerCheck {
				chk.expired = append(chk.expired, t.key)
			}
		case t.order < own:
			older[t.taskID] = struct{}{}
		}
	}
	chk.rank = len(older)
	if chk.rank >= limit {
		return chk, nil // every slot goes to an older waiter first
	}
	hold, err := w.takeSlot(ctx, j, jp.name, limit, chk.rank, now)
	chk.hold = hold
	return chk, err
}

// takeSlot reads the pool's slots from the one the task ID hashes to and
// takes the (leave+1)-th free one it finds — the first leave free ones are
// left to older waiters, unless they have been free for longer than grace
// (the older waiters did not come for them) — or nil when there is none for
// it.
func (w *Worker) takeSlot(ctx context.Context, j *workerJob, pool string, limit, leave int, now time.Time) (*poolHold, error) {
	p := w.pools
	h := fnv.New32a()
	_, _ = h.Write([]byte(j.env.TaskID))
	start := int(h.Sum32() % uint32(limit))
	rec := poolSlotRecord{Worker: w.id, Task: j.env.TaskID, Since: now, Until: now.Add(p.lease)}
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	free := 0
	for n := range limit {
		key := poolSlotKey(pool, (start+n)%limit)
		var cond ports.WriteCondition
		var freeSince time.Time
		r, err := p.state.Get(ctx, key)
		switch {
		case errors.Is(err, ports.ErrNotFound):
			cond.MustNotExist = true
		case err != nil:
			return nil, fmt.Errorf("read slot %s: %w", key, err)
		default:
			var free bool
			if free, freeSince = slotFree(r.Data, now); !free {
				continue
			}
			cond.MatchVersion = r.Version
		}
		if free++; free <= leave && now.Sub(freeSince) < p.grace() {
			continue // an older waiter's, for now
		}
		v, err := p.state.Put(ctx, key, data, cond)
		switch {
		case err == nil:
			return &poolHold{pool: pool, key: key, limit: limit, version: v, rec: rec,
				stop: make(chan struct{}), done: make(chan struct{})}, nil
		case errors.Is(err, ports.ErrConflict), errors.Is(err, ports.ErrAlreadyExists), errors.Is(err, ports.ErrNotFound):
			free-- // another task took it first
		default:
			return nil, fmt.Errorf("take slot %s: %w", key, err)
		}
	}
	return nil, nil
}

// postponeForPool hands j back to wait for a slot: it writes the task's new
// wait ticket, deletes its old ones and expired ones of others, and
// requeues the message with delay.
func (w *Worker) postponeForPool(j *workerJob, jp *jobPool, chk poolCheck, delay time.Duration) {
	p := w.pools
	now := time.Now()
	pw := wire.PoolWait{Since: chk.since, Ticket: now.Add(delay + p.grace()), Waits: jp.wait.Waits + 1}
	key := poolTicketKey(jp.name, pw.Since, j.env.TaskID, pw.Ticket)
	// The new ticket first, then the old one goes: the task is never without
	// one, so no newer task passes it meanwhile.
	tctx, cancel := w.opContext()
	defer cancel()
	if _, err := p.state.Put(tctx, key, nil, ports.WriteCondition{}); err != nil {
		j.log.Warn("writing the task's wait ticket failed; newer tasks may pass it until the next check",
			"pool", jp.name, "err", err)
	} else {
		w.deleteTickets(j, slices.DeleteFunc(append(chk.old, chk.expired...), func(k string) bool { return k == key }))
	}
	d, ok := w.takeUnstarted(j)
	if !ok {
		return
	}
	jp.postponed = true
	j.result.Outcome = OutcomePostponed
	j.log.Debug("pool full; the task waits", "pool", jp.name, "older_waiters", chk.rank, "retry_in", delay,
		"waits", pw.Waits, "waiting_since", pw.Since)
	w.obs.PoolWaited(jp.name)
	w.settle(j.l)
	w.postpone(d, delay, map[string]string{wire.PoolWaitAttribute: pw.Format()}, j.log)
}

// deleteTickets deletes wait tickets (best effort: a ticket left behind
// expires on its own).
func (w *Worker) deleteTickets(j *workerJob, keys []string) {
	if len(keys) == 0 {
		return
	}
	ctx, cancel := w.opContext()
	defer cancel()
	for _, k := range keys {
		if err := w.pools.state.Delete(ctx, k); err != nil {
			j.log.Debug("deleting a wait ticket failed; it expires on its own", "key", k, "err", err)
		}
	}
}

// renewPoolSlot renews h's lease every Lease/3 until releasePoolSlot stops
// it. When the slot cannot be renewed before its lease ends, or another
// task holds it now, it cancels j's handler with cause ErrPoolSlotLost.
func (w *Worker) renewPoolSlot(j *workerJob, h *poolHold) {
	defer close(h.done)
	p := w.pools
	every := p.lease / 3
	timer := time.NewTimer(every)
	defer timer.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-timer.C:
		}
		h.mu.Lock()
		rec, version := h.rec, h.version
		h.mu.Unlock()
		now := time.Now()
		next := rec
		next.Until = now.Add(p.lease)
		data, _ := json.Marshal(next) // a struct of strings and times
		ctx, cancel := context.WithTimeout(w.base, every)
		v, err := p.state.Put(ctx, h.key, data, ports.WriteCondition{MatchVersion: version})
		if errors.Is(err, ports.ErrConflict) {
			v, err = w.ownedVersion(ctx, h, rec, data)
		}
		cancel()
		switch {
		case err == nil:
			h.mu.Lock()
			h.version, h.rec = v, next
			h.mu.Unlock()
			timer.Reset(every)
			continue
		case errors.Is(err, ports.ErrConflict), errors.Is(err, ports.ErrNotFound):
			w.losePoolSlot(j, h, "another task holds the slot now", err)
			return
		case !time.Now().Before(rec.Until):
			w.losePoolSlot(j, h, "its lease ended before it could be renewed", err)
			return
		}
		j.log.Warn("renewing the task's pool slot failed; retrying", "pool", h.pool, "slot", h.key,
			"until", rec.Until, "err", err)
		timer.Reset(min(every, time.Until(rec.Until)))
	}
}

// ownedVersion handles a conditional write on h's slot that found another
// version: when the record is still h's holding (a write whose answer was
// lost), it writes data over it and returns the new version; otherwise
// ErrConflict.
func (w *Worker) ownedVersion(ctx context.Context, h *poolHold, rec poolSlotRecord, data []byte) (string, error) {
	r, err := w.pools.state.Get(ctx, h.key)
	if err != nil {
		return "", err
	}
	var cur poolSlotRecord
	if json.Unmarshal(r.Data, &cur) != nil || cur.Worker != rec.Worker || cur.Task != rec.Task || !cur.Since.Equal(rec.Since) {
		return "", fmt.Errorf("slot %s is held by task %q of worker %q: %w", h.key, cur.Task, cur.Worker, ports.ErrConflict)
	}
	return w.pools.state.Put(ctx, h.key, data, ports.WriteCondition{MatchVersion: r.Version})
}

// losePoolSlot marks h lost and cancels j's handler with ErrPoolSlotLost.
func (w *Worker) losePoolSlot(j *workerJob, h *poolHold, why string, err error) {
	h.mu.Lock()
	h.lost = true
	h.mu.Unlock()
	j.log.Error("the task lost its pool slot; cancelling its handler (the attempt is retried), "+
		"since another task may run in the slot now", "pool", h.pool, "slot", h.key, "reason", why, "err", err)
	j.cancel(fmt.Errorf("%w: %s of pool %q: %s", ErrPoolSlotLost, h.key, h.pool, why))
}

// releasePoolSlot stops renewing h and frees the slot (a write conditional
// on the version renewals wrote last). When that fails the slot frees
// itself when its lease ends.
func (w *Worker) releasePoolSlot(j *workerJob, h *poolHold) {
	close(h.stop)
	<-h.done
	h.mu.Lock()
	lost, rec, version := h.lost, h.rec, h.version
	h.mu.Unlock()
	defer w.obs.PoolReleased(h.pool, lost)
	if lost {
		return
	}
	ctx, cancel := w.opContext()
	defer cancel()
	freed := freedSlotData(time.Now())
	_, err := w.pools.state.Put(ctx, h.key, freed, ports.WriteCondition{MatchVersion: version})
	if errors.Is(err, ports.ErrConflict) {
		_, err = w.ownedVersion(ctx, h, rec, freed)
	}
	if err != nil {
		j.log.Warn("freeing the task's pool slot failed; it frees itself when its lease ends",
			"pool", h.pool, "slot", h.key, "until", rec.Until, "err", err)
	}
}

// poolSlotLostErr gives a handler error caused by a lost pool slot (its
// context cancelled with ErrPoolSlotLost) that cause, so that the result
// and the logs say why.
func poolSlotLostErr(err, cause error) error {
	if err == nil || !errors.Is(cause, ErrPoolSlotLost) || errors.Is(err, ErrPoolSlotLost) {
		return err
	}
	return fmt.Errorf("%w (%w)", cause, err)
}

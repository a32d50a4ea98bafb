package core

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// Submit sends one task and returns its ID (req.ID, or a new NewTaskID).
//
// The request is validated first: an empty task name, an invalid ID or
// GroupID (more than 128 bytes, or not printable ASCII without spaces), a
// field over its limit (MaxTaskNameLen, MaxRunIDLen, MaxStepIDLen,
// MaxLabels, MaxKeyLen, MaxLabelValueLen: the error names the field, its
// size and the limit), an invalid Retry policy, a Delay outside
// 0..MaxTaskDelay, a NotBefore more than MaxTaskDelay ahead, both Delay and
// NotBefore set, a Deadline not after the due time, or Args that do not
// encode to JSON fail with an error matching ports.ErrInvalidArgument and
// nothing is sent. A FIFO queue refuses a task delayed by a second or more
// (the broker's Send fails with ports.ErrInvalidArgument). With
// Completions, the first Submit opens the client's inbox (an Open failure
// fails the Submit). Submit then blocks until the Broker has
// accepted the message or failed; a Broker error is wrapped (errors.Is and
// errors.As see it) and the ID is still returned, because a Send that timed
// out may have queued the task: re-submitting with WithID(id) is safe.
//
// An encoded envelope larger than Ports.PayloadThreshold is stored
// in Ports.Payloads first and sent as a claim check (attribute
// "dagq-payload"); a failed Put fails the request (nothing is sent). A
// Send the broker definitely refused deletes the stored object again (best
// effort); after an ambiguous failure such as a timeout the message may be
// queued, so the object is kept (the store's lifecycle rule is the safety
// net). Without Payloads such a request fails validation: nothing is sent.
// An envelope above ClientOptions.MaxEnvelopeBytes (default 64 MiB) fails
// validation too, with or without Payloads.
func (c *Client) Submit(ctx context.Context, req Request) (string, error) {
	ids, err := c.SubmitBatch(ctx, req)
	if err == nil {
		return ids[0], nil
	}
	var se *SubmitError
	if errors.As(err, &se) && len(ids) == 1 {
		return ids[0], fmt.Errorf("dagq: submit %w", se.Failed[0])
	}
	return "", err
}

// SubmitBatch sends reqs and returns their IDs in order. Messages go to the
// Broker in calls of at most ports.MaxBatch.
//
// Validation is the same as Submit's, for all requests before anything is
// sent: if any request is invalid, nothing is sent, the IDs are nil and the
// error (matching ports.ErrInvalidArgument) names every invalid request's
// index. When some sends fail, SubmitBatch still returns all IDs, with a
// *SubmitError naming the index in reqs of every request that was not (or
// maybe not) sent; requests not named were sent. Once ctx is done the
// remaining requests are not sent and fail with ctx's error.
func (c *Client) SubmitBatch(ctx context.Context, reqs ...Request) ([]string, error) {
	return c.submitBatch(ctx, nil, reqs)
}

// submitBatchUntraced is SubmitBatch without its spans (submitBatch adds
// them); with w, the tasks are added to w before anything is sent, so that
// none of their notifications can be missed.
func (c *Client) submitBatchUntraced(ctx context.Context, w *Watch, reqs []Request) ([]string, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	if err := c.errIfClosed(); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	// Validate every request first (its ID and encoded args are kept; the
	// envelopes are built and encoded one at a time below).
	ids := make([]string, len(reqs))
	args := make([]json.RawMessage, len(reqs))
	sched := make([]sendSchedule, len(reqs))
	var invalid []error
	refuse := func(i int, err error) { // named by index when there are several
		if len(reqs) > 1 {
			err = fmt.Errorf("request %d: %w", i, err)
		}
		invalid = append(invalid, err)
	}
	for i := range reqs {
		var err error
		if ids[i], args[i], err = prepareRequest(&reqs[i]); err != nil {
			refuse(i, err)
			continue
		}
		if sched[i], err = c.schedule(&reqs[i], ids[i], now); err != nil {
			refuse(i, err)
			continue
		}
		if w != nil && reqs[i].Result == ResultNone {
			refuse(i, fmt.Errorf("%w: task %q (id %s): result policy %q records no outcome a Watch could report; "+
				"submit it with Client.Submit, or choose %q or %q",
				ports.ErrInvalidArgument, reqs[i].Task, ids[i], ResultNone, ResultReply, ResultDurable))
		}
	}
	if len(invalid) > 0 {
		return nil, fmt.Errorf("dagq: submit: nothing sent: %w", errors.Join(invalid...))
	}
	var replyTo string
	if slices.ContainsFunc(reqs, func(r Request) bool { return r.Result != ResultNone }) {
		var err error
		if replyTo, err = c.replyAddress(ctx); err != nil {
			return nil, fmt.Errorf("dagq: submit: nothing sent: %w", err)
		}
	}
	msgs := make([]ports.Message, len(reqs))
	var env wire.Envelope
	for i := range reqs {
		fillEnvelope(&env, &reqs[i], ids[i], args[i], now)
		env.NotBefore = sched[i].due
		if reqs[i].Result != ResultNone {
			env.ReplyTo = replyTo
		}
		body, err := env.Encode()
		if err != nil {
			refuse(i, fmt.Errorf("%w: %w", ports.ErrInvalidArgument, err))
			continue
		}
		group := reqs[i].GroupID
		if group == "" && c.groupBy != GroupByTask {
			group = env.RunID
		}
		if group == "" {
			group = env.TaskID
		}
		msgs[i] = ports.Message{ID: env.TaskID, Body: body, GroupID: group, Delay: sched[i].delay}
		if c.signer != nil {
			msgs[i].Attributes = map[string]string{wire.SignatureAttribute: c.signer.Sign(body)}
		}
		if c.maxEnvelope >= 0 && len(body) > c.maxEnvelope {
			err := fmt.Errorf("%w: task %q (id %s): the envelope is %d bytes, above the limit of %d bytes "+
				"(ClientOptions.MaxEnvelopeBytes); make the arguments and inputs smaller, e.g. pass a reference "+
				"to data kept in a store",
				ports.ErrInvalidArgument, env.Task, env.TaskID, len(body), c.maxEnvelope)
			refuse(i, err)
			continue
		}
		if len(body) > c.threshold && c.payloads == nil {
			err := fmt.Errorf("%w: task %q (id %s): the envelope is %d bytes, above the payload threshold "+
				"of %d bytes (Ports.PayloadThreshold); set Ports.Payloads to send large tasks "+
				"through a payload store, or make the arguments smaller",
				ports.ErrInvalidArgument, env.Task, env.TaskID, len(body), c.threshold)
			refuse(i, err)
		}
	}
	if len(invalid) > 0 {
		return nil, fmt.Errorf("dagq: submit: nothing sent: %w", errors.Join(invalid...))
	}

	c.mu.Lock()
	if w != nil {
		if err := w.usableLocked(); err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("dagq: submit: nothing sent: %w", err)
		}
	}
	for i, id := range ids {
		if reqs[i].Result == ResultNone {
			c.memo.noResult(id)
			continue
		}
		c.memo.submitted(id, replyTo != "")
		if w != nil {
			w.addLocked(id)
		}
	}
	c.mu.Unlock()

	failed := make(map[int]error)
	var unsent []string // IDs of tasks certainly not queued
	fail := func(i int, err error) {
		failed[i] = fmt.Errorf("task %q (id %s): %w", reqs[i].Task, ids[i], err)
	}
	for start := 0; start < len(msgs); start += ports.MaxBatch {
		end := min(start+ports.MaxBatch, len(msgs))
		if ctxErr := ctx.Err(); ctxErr != nil {
			for i := start; i < end; i++ {
				fail(i, ctxErr)
				unsent = append(unsent, ids[i])
			}
			continue
		}
		// Offload the large envelopes of the chunk; a request whose Put
		// fails is not sent. Without any, the chunk is msgs[start:end].
		var (
			chunk = msgs[start:end]
			idx   []int    // index in reqs of each chunk message, nil: start+k
			keys  []string // its payload key, "" when not offloaded; nil: none
		)
		if slices.ContainsFunc(chunk, func(m ports.Message) bool { return len(m.Body) > c.threshold }) {
			chunk = nil
			for i := start; i < end; i++ {
				m := msgs[i]
				key := ""
				if len(m.Body) > c.threshold {
					var err error
					if m, key, err = c.offload(ctx, wire.ClaimCheck{TaskID: ids[i], Task: reqs[i].Task, ReplyTo: replyTo}, m); err != nil {
						fail(i, err)
						unsent = append(unsent, ids[i])
						continue
					}
				}
				chunk, idx, keys = append(chunk, m), append(idx, i), append(keys, key)
			}
		}
		if len(chunk) == 0 {
			continue
		}
		err := c.broker.Send(ctx, chunk...)
		if err == nil {
			continue
		}
		var orphans []string
		for k := range chunk {
			if ie := ports.ItemError(err, k); ie != nil {
				i := start + k
				if idx != nil {
					i = idx[k]
				}
				fail(i, ie)
				if definitelyNotSent(err, ie) {
					unsent = append(unsent, ids[i])
					if keys != nil && keys[k] != "" {
						orphans = append(orphans, keys[k])
					}
				}
			}
		}
		c.deletePayloads(ctx, orphans)
	}
	if len(unsent) > 0 {
		// Not pending: waiting for them takes the path of unknown tasks.
		c.mu.Lock()
		for _, id := range unsent {
			c.memo.unsent(id)
		}
		c.mu.Unlock()
	}
	if len(failed) > 0 {
		return ids, &SubmitError{Failed: failed}
	}
	return ids, nil
}

// offload stores m's body (an encoded envelope) in the payload store and
// returns the claim-check message that replaces m (the placeholder cc with
// the object's key) and the key.
func (c *Client) offload(ctx context.Context, cc wire.ClaimCheck, m ports.Message) (ports.Message, string, error) {
	key := cc.TaskID + "/" + NewTaskID()
	if err := c.payloads.Put(ctx, key, m.Body); err != nil {
		return m, "", fmt.Errorf("store the %d-byte envelope in the payload store: %w", len(m.Body), err)
	}
	cc.Payload = key
	stub, err := json.Marshal(cc)
	if err != nil { // cannot happen: strings only
		return m, "", fmt.Errorf("encode the claim check: %w", err)
	}
	m.Body = stub
	m.Attributes = maps.Clone(m.Attributes) // keeps the signature, which covers the stored envelope
	if m.Attributes == nil {
		m.Attributes = make(map[string]string, 1)
	}
	m.Attributes[wire.PayloadAttribute] = key
	return m, key, nil
}

// definitelyNotSent tells whether a failed Send item is known not to be
// queued: the service answered for the item (a *BatchError), or refused the
// whole call outright. After an ambiguous failure (unavailable, timeout) the
// message may have been queued anyway, so its payload object is kept (the
// bucket's lifecycle rule removes it if it really is an orphan): deleting it
// could make a queued task fail with "claim-check object … is missing".
func definitelyNotSent(callErr, itemErr error) bool {
	var be *ports.BatchError
	if errors.As(callErr, &be) {
		return true
	}
	return errors.Is(itemErr, ports.ErrInvalidArgument) || errors.Is(itemErr, ports.ErrNotFound) ||
		errors.Is(itemErr, ports.ErrClosed)
}

// deletePayloads removes the payload objects of messages that were not sent,
// best effort (a later Send of the task stores a new object).
func (c *Client) deletePayloads(ctx context.Context, keys []string) {
	for start := 0; start < len(keys); start += ports.MaxBatch {
		chunk := keys[start:min(start+ports.MaxBatch, len(keys))]
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), payloadDeleteTimeout)
		err := c.payloads.Delete(dctx, chunk...)
		cancel()
		if err != nil {
			c.log.Warn("deleting the payload objects of unsent tasks failed; they stay in the payload store",
				"keys", chunk, "err", err)
		}
	}
}

// payloadDeleteTimeout bounds a best-effort Delete of payload objects.
const payloadDeleteTimeout = 30 * time.Second

// prepareRequest validates req and returns its task ID (req.ID or a new one)
// and its encoded args, for fillEnvelope.
func prepareRequest(req *Request) (id string, args json.RawMessage, err error) {
	if req.Task == "" {
		return "", nil, fmt.Errorf("%w: empty task name", ports.ErrInvalidArgument)
	}
	id = req.ID
	if id == "" {
		id = NewTaskID()
	} else if err := ValidateTaskID(id); err != nil {
		return "", nil, fmt.Errorf("task %q: %w", req.Task, err)
	}
	if err := checkLimits(req, id); err != nil {
		return "", nil, err
	}
	if req.GroupID != "" {
		if err := ValidateTaskID(req.GroupID); err != nil {
			return "", nil, fmt.Errorf("task %q (id %s): group ID: %w", req.Task, id, err)
		}
	}
	if req.Pool != "" {
		if err := ValidatePoolName(req.Pool); err != nil {
			return "", nil, fmt.Errorf("task %q (id %s): %w", req.Task, id, err)
		}
	}
	if !req.Result.Valid() {
		return "", nil, fmt.Errorf("%w: task %q (id %s): result policy %q; valid: %q (default), %q, %q",
			ports.ErrInvalidArgument, req.Task, id, req.Result, ResultDurable, ResultReply, ResultNone)
	}
	if req.Retry != nil {
		if err := req.Retry.Validate(); err != nil {
			return "", nil, fmt.Errorf("%w: task %q (id %s): %v", ports.ErrInvalidArgument, req.Task, id, err)
		}
	}
	for name, in := range req.Inputs {
		if len(in) > 0 && !json.Valid(in) {
			return "", nil, fmt.Errorf("%w: task %q (id %s): input %q is not valid JSON",
				ports.ErrInvalidArgument, req.Task, id, name)
		}
	}
	switch a := req.Args.(type) {
	case nil:
	case json.RawMessage:
		if len(a) > 0 && !json.Valid(a) {
			return "", nil, fmt.Errorf("%w: task %q (id %s): args are a json.RawMessage that is not valid JSON",
				ports.ErrInvalidArgument, req.Task, id)
		}
		args = a
	default:
		b, merr := json.Marshal(a)
		if merr != nil {
			return "", nil, fmt.Errorf("%w: task %q (id %s): encode args (%T) to JSON: %w",
				ports.ErrInvalidArgument, req.Task, id, a, merr)
		}
		args = b
	}
	return id, args, nil
}

// fillEnvelope sets *env to the envelope (without ReplyTo) of req, prepared
// by prepareRequest.
func fillEnvelope(env *wire.Envelope, req *Request, id string, args json.RawMessage, now time.Time) {
	*env = wire.Envelope{
		TaskID:   id,
		Task:     req.Task,
		Attempt:  1,
		Args:     args,
		Labels:   req.Labels,
		Meta:     req.Meta,
		RunID:    req.RunID,
		StepID:   req.StepID,
		Inputs:   req.Inputs,
		Params:   req.Params,
		Deadline: req.Deadline,
		Progress: req.Progress,
		Retry:    (*wire.Retry)(req.Retry),
		SentAt:   now,
		Pool:     req.Pool,
	}
	if req.Result != ResultDurable {
		env.Result = string(req.Result)
	}
}

// replyAddress returns the inbox address for ReplyTo, opening the inbox and
// starting its dispatcher on first use; "" without a live inbox.
func (c *Client) replyAddress(ctx context.Context) (string, error) {
	if c.completions == nil {
		return "", nil
	}
	c.mu.Lock()
	addr, opened := c.replyTo, c.inbox != nil
	c.mu.Unlock()
	if opened {
		return addr, nil // "" once the inbox is gone: the client polls instead
	}

	c.openMu.Lock()
	defer c.openMu.Unlock()
	c.mu.Lock()
	addr, opened, closed := c.replyTo, c.inbox != nil, c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return "", fmt.Errorf("dagq: client: %w", ports.ErrClosed)
	case opened:
		return addr, nil
	}
	inbox, err := c.completions.Open(ctx)
	if err != nil {
		return "", fmt.Errorf("open completion inbox: %w", err)
	}
	addr = inbox.Address()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = inbox.Close()
		return "", fmt.Errorf("dagq: client: %w", ports.ErrClosed)
	}
	c.inbox, c.replyTo, c.pushLive = inbox, addr, true
	c.wg.Add(1)
	c.mu.Unlock()
	go c.dispatch(inbox)
	return addr, nil
}

// SubmitError reports the requests of a SubmitBatch that were not sent (or
// whose Send failed ambiguously, e.g. on a timeout). Requests not named were
// sent. errors.Is and errors.As see every request's cause, so
// errors.Is(err, ports.ErrUnavailable) is true when at least one send was
// throttled.
type SubmitError struct {
	// Failed maps the index of a request in SubmitBatch's arguments to its
	// error.
	Failed map[int]error
}

// Error lists the failed requests in index order (the first five, then a
// count).
func (e *SubmitError) Error() string {
	idx := e.indexes()
	const show = 5
	parts := make([]string, 0, min(len(idx), show)+1)
	for _, i := range idx[:min(len(idx), show)] {
		parts = append(parts, fmt.Sprintf("request %d: %v", i, e.Failed[i]))
	}
	if len(idx) > show {
		parts = append(parts, fmt.Sprintf("and %d more", len(idx)-show))
	}
	return fmt.Sprintf("dagq: submit: %d request(s) not sent: %s", len(idx), strings.Join(parts, "; "))
}

// Unwrap returns the request errors in index order.
func (e *SubmitError) Unwrap() []error {
	idx := e.indexes()
	errs := make([]error, 0, len(idx))
	for _, i := range idx {
		errs = append(errs, e.Failed[i])
	}
	return errs
}

func (e *SubmitError) indexes() []int {
	idx := make([]int, 0, len(e.Failed))
	for i := range e.Failed {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	return idx
}

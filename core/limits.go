package core

import (
	"fmt"

	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// Limits of a task's fields, in bytes (entries for maps), the same at Submit
// and in the worker (docs/semantics.md, "Size limits"). Submit refuses a
// request over one of them with an error matching ports.ErrInvalidArgument
// that names the field, its size and the limit; a worker never executes a
// delivery over one of them (see Worker, "Poison messages"). They keep
// every field storable wherever it goes: the task ID is the SQS message and
// deduplication ID and, under the store's key prefix, the S3 key of the
// result; names and IDs end up in logs, metrics and traces. Args, inputs
// and param values are bounded by ClientOptions.MaxEnvelopeBytes only.
const (
	// MaxTaskIDLen is the longest task ID (Request.ID; the SQS
	// deduplication-ID limit). GroupID has the same limit.
	MaxTaskIDLen = wire.MaxTaskIDLen
	// MaxTaskNameLen is the longest task name (Request.Task, and the names
	// a Registry accepts).
	MaxTaskNameLen = wire.MaxTaskNameLen
	// MaxRunIDLen and MaxStepIDLen are the longest Request.RunID and
	// Request.StepID.
	MaxRunIDLen  = wire.MaxRunIDLen
	MaxStepIDLen = wire.MaxStepIDLen
	// MaxLabels is the largest number of entries of Request.Labels, and of
	// Request.Meta.
	MaxLabels = wire.MaxLabels
	// MaxKeyLen is the longest key of Request.Labels, Meta, Params and
	// Inputs.
	MaxKeyLen = wire.MaxKeyLen
	// MaxLabelValueLen is the longest value of Request.Labels and Meta.
	MaxLabelValueLen = wire.MaxLabelValueLen
)

// checkLimits reports the first field of req (with task ID id) over its
// limit, matching ports.ErrInvalidArgument.
func checkLimits(req *Request, id string) error {
	env := wire.Envelope{TaskID: id, Task: req.Task, Labels: req.Labels, Meta: req.Meta,
		RunID: req.RunID, StepID: req.StepID, Params: req.Params, Inputs: req.Inputs}
	if err := env.CheckLimits(); err != nil {
		return fmt.Errorf("%w: %w", ports.ErrInvalidArgument, err)
	}
	return nil
}
